"""app/__main__.py: `python -m app` reads PORT and WEB_CONCURRENCY, and refuses a bad value by name."""

from __future__ import annotations

import pytest

from app.__main__ import access_log, default_workers, port, workers


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.setenv("WEB_CONCURRENCY", "")
    assert (port(), workers()) == (8000, default_workers())
    assert 1 <= default_workers() <= 4


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert (port(), workers()) == (8123, 3)


@pytest.mark.parametrize("value", ["eighty", "0", "65536", "-1"])
def test_a_bad_port_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PORT", value)
    with pytest.raises(SystemExit, match=r"^PORT must be"):
        port()


@pytest.mark.parametrize("value", ["many", "0", "1.5"])
def test_a_bad_worker_count_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WEB_CONCURRENCY", value)
    with pytest.raises(SystemExit, match=r"^WEB_CONCURRENCY must be"):
        workers()


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("off", False), ("1", True), ("Yes", True)])
def test_access_log_is_off_unless_asked_for(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("ACCESS_LOG", value)
    assert access_log() is expected


def test_a_bad_access_log_value_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCESS_LOG", "verbose")
    with pytest.raises(SystemExit, match=r"^ACCESS_LOG must be"):
        access_log()
