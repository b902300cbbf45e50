"""app/config.py: settings from the environment, and a bad value refused at start with its name."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from app.config import ConfigError, Settings
from app.main import create_app


def test_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.models_dir == Path("models").absolute()
    assert settings.default_model == "random_forest"
    assert settings.max_records == 10_000
    assert (settings.metrics, settings.log_format, settings.access_log) == (True, "text", False)


def test_limits_default_to_room_for_max_records() -> None:
    settings = Settings.from_env({})
    assert settings.body_limit == 4_000_000  # 400 bytes for each of the 10,000 records
    assert Settings.from_env({"MAX_RECORDS": "10"}).body_limit == 4_000
    assert (settings.body_timeout, settings.max_concurrent_requests) == (30, 64)
    assert (settings.api_token, settings.strict_sklearn_version) == (None, False)


def test_hardening_values_come_from_the_environment() -> None:
    token = "0123456789abcdef0123"
    environ = {"MAX_BODY_BYTES": "1000", "BODY_TIMEOUT": "3", "MAX_CONCURRENT_REQUESTS": "8"}
    settings = Settings.from_env(environ | {"API_TOKEN": f" {token} ", "STRICT_SKLEARN_VERSION": "1"})
    assert (settings.body_limit, settings.body_timeout, settings.max_concurrent_requests) == (1000, 3, 8)
    assert (settings.api_token, settings.strict_sklearn_version) == (token, True)


def test_values_come_from_the_environment(tmp_path: Path) -> None:
    environ = {"MODELS_DIR": str(tmp_path), "DEFAULT_MODEL": "svc", "MAX_RECORDS": "5"}
    environ |= {"METRICS": "0", "LOG_FORMAT": "JSON", "ACCESS_LOG": "1"}
    assert Settings.from_env(environ) == Settings(tmp_path, "svc", 5, metrics=False, log_format="json", access_log=True)


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("off", False), ("1", True), ("Yes", True)])
def test_access_log_is_off_unless_asked_for(value: str, expected: bool) -> None:
    assert Settings.from_env({"ACCESS_LOG": value}).access_log is expected


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("1", True), ("on", True)])
def test_served_by_is_off_unless_asked_for(value: str, expected: bool) -> None:
    assert Settings.from_env({"SERVED_BY": value}).served_by is expected


@pytest.mark.parametrize(("value", "expected"), [("", True), ("1", True), ("0", False), ("false", False)])
def test_metrics_are_on_unless_turned_off(value: str, expected: bool) -> None:
    assert Settings.from_env({"METRICS": value}).metrics is expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("MAX_RECORDS", "many", id="max-records-not-a-number"),
        pytest.param("MAX_RECORDS", "0", id="max-records-zero"),
        pytest.param("MAX_RECORDS", "-3", id="max-records-negative"),
        pytest.param("DEFAULT_MODEL", "../outside", id="default-model-a-path"),
        pytest.param("DEFAULT_MODEL", "", id="default-model-empty"),
        pytest.param("MODELS_DIR", " ", id="models-dir-blank"),
        pytest.param("MAX_BODY_BYTES", "4MB", id="max-body-bytes-not-a-number"),
        pytest.param("BODY_TIMEOUT", "0", id="body-timeout-zero"),
        pytest.param("MAX_CONCURRENT_REQUESTS", "none", id="max-concurrent-not-a-number"),
        pytest.param("API_TOKEN", "changeme", id="api-token-too-short"),
        pytest.param("API_TOKEN", "a long token with spaces", id="api-token-with-spaces"),
        pytest.param("STRICT_SKLEARN_VERSION", "maybe", id="strict-sklearn-not-a-flag"),
        pytest.param("ACCESS_LOG", "verbose", id="access-log-not-a-flag"),
        pytest.param("METRICS", "maybe", id="metrics-not-a-flag"),
        pytest.param("SERVED_BY", "replica", id="served-by-not-a-flag"),
        pytest.param("LOG_FORMAT", "xml", id="log-format-unknown"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}\b.*\.$"):
        Settings.from_env({variable: value})


def test_the_app_refuses_to_start_with_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_RECORDS", "ten")
    with pytest.raises(ConfigError, match="MAX_RECORDS"), TestClient(create_app()):
        pass


def test_the_app_reads_the_environment_when_it_starts(monkeypatch: pytest.MonkeyPatch, models_dir: Path) -> None:
    monkeypatch.setenv("MODELS_DIR", str(models_dir))
    with TestClient(create_app()) as client:
        assert client.get("/models").json()["path"] == str(models_dir)
