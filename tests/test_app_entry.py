"""app/config.py ServerSettings: how `python -m app` runs uvicorn; a bad value refused by name."""

from __future__ import annotations

import pytest

from app.config import ConfigError, ServerSettings, default_workers


def test_defaults() -> None:
    server = ServerSettings.from_env({})
    assert (server.host, server.port, server.workers) == ("127.0.0.1", 8000, default_workers())
    assert 1 <= default_workers() <= 4


def test_values_come_from_the_environment() -> None:
    server = ServerSettings.from_env({"HOST": "0.0.0.0", "PORT": "8123", "WEB_CONCURRENCY": "3"})
    assert server == ServerSettings("0.0.0.0", 8123, 3)


@pytest.mark.parametrize("value", ["eighty", "0", "65536", "-1"])
def test_a_bad_port_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^PORT="):
        ServerSettings.from_env({"PORT": value})


@pytest.mark.parametrize("value", ["many", "0", "1.5"])
def test_a_bad_worker_count_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^WEB_CONCURRENCY="):
        ServerSettings.from_env({"WEB_CONCURRENCY": value})
