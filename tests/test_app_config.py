"""app/config.py: the app's and the server's settings from the environment, and a bad value refused by name.

Every setting is also fed generated strings: each is either taken with the meaning app/README.md's settings
table gives it, or refused with one line naming the variable, never a traceback.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from app.__main__ import serve
from app.config import ConfigError, ServerSettings, Settings, default_workers
from tests.helpers import ROOT

# --- defaults and values --------------------------------------------------------------------------


def test_the_app_settings_default_to_the_documented_values() -> None:
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
    assert settings.api_token is not None and settings.api_token.get_secret_value() == token
    assert settings.strict_sklearn_version


def test_the_token_never_shows_when_the_settings_are_printed() -> None:
    token = "0123456789abcdef0123"
    settings = Settings.from_env({"API_TOKEN": token})
    assert token not in repr(settings) and token not in str(settings.model_dump())


def test_values_come_from_the_environment(tmp_path: Path) -> None:
    environ = {"MODELS_DIR": str(tmp_path), "DEFAULT_MODEL": "svc", "MAX_RECORDS": "5"}
    environ |= {"METRICS": "0", "LOG_FORMAT": "JSON", "ACCESS_LOG": "1"}
    expected = Settings(
        models_dir=tmp_path, default_model="svc", max_records=5, metrics=False, log_format="json", access_log=True
    )
    assert Settings.from_env(environ) == expected


def test_a_blank_value_means_the_default() -> None:
    blank = {name.upper(): " " for name in Settings.model_fields}
    assert Settings.from_env(blank) == Settings.from_env({})


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("off", False), ("1", True), ("Yes", True)])
def test_access_log_is_off_unless_asked_for(value: str, expected: bool) -> None:
    assert Settings.from_env({"ACCESS_LOG": value}).access_log is expected


@pytest.mark.parametrize(("value", "expected"), [("", False), ("0", False), ("1", True), ("on", True)])
def test_served_by_is_off_unless_asked_for(value: str, expected: bool) -> None:
    assert Settings.from_env({"SERVED_BY": value}).served_by is expected


@pytest.mark.parametrize(("value", "expected"), [("", True), ("1", True), ("0", False), ("false", False)])
def test_metrics_are_on_unless_turned_off(value: str, expected: bool) -> None:
    assert Settings.from_env({"METRICS": value}).metrics is expected


def test_drift_monitoring_is_on_over_the_last_1000_records_unless_told_otherwise() -> None:
    assert (Settings.from_env({}).drift_monitoring, Settings.from_env({}).drift_window) == (True, 1000)
    settings = Settings.from_env({"DRIFT_MONITORING": "off", "DRIFT_WINDOW": "250"})
    assert (settings.drift_monitoring, settings.drift_window) == (False, 250)


def test_a_whole_number_may_have_spaces_around_it() -> None:
    assert Settings.from_env({"MAX_RECORDS": " 3 "}).max_records == 3


def test_the_server_settings_default_to_the_documented_values() -> None:
    server = ServerSettings.from_env({})
    assert (server.host, server.port, server.web_concurrency) == ("127.0.0.1", 8000, default_workers())
    assert (server.keep_alive_timeout, server.headers_timeout, server.graceful_timeout) == (5, 10, 8)
    assert 1 <= default_workers() <= 4


def test_server_values_reach_uvicorn() -> None:
    environ = {"HOST": "0.0.0.0", "PORT": "8123", "WEB_CONCURRENCY": "3"}
    environ |= {"KEEP_ALIVE_TIMEOUT": "2", "HEADERS_TIMEOUT": "3", "GRACEFUL_TIMEOUT": "4"}
    server = ServerSettings.from_env(environ)
    options = server.uvicorn_options()
    assert (options["host"], options["port"], options["workers"]) == ("0.0.0.0", 8123, 3)
    assert (options["timeout_keep_alive"], options["timeout_graceful_shutdown"], server.headers_timeout) == (2, 4, 3)


def test_only_loopback_proxies_are_trusted_by_default() -> None:
    assert ServerSettings.from_env({}).uvicorn_options()["forwarded_allow_ips"] == "127.0.0.1,::1"


def test_trusted_proxies_come_from_the_environment() -> None:
    server = ServerSettings.from_env({"FORWARDED_ALLOW_IPS": " 172.16.238.2, 10.0.0.0/8 ,* "})
    assert server.uvicorn_options()["forwarded_allow_ips"] == "172.16.238.2,10.0.0.0/8,*"


def test_without_affinity_the_workers_follow_the_cpu_count(monkeypatch: pytest.MonkeyPatch) -> None:
    # macOS has no sched_getaffinity.
    monkeypatch.delattr("os.sched_getaffinity")
    monkeypatch.setattr("os.cpu_count", lambda: 3)
    assert default_workers() == 3


# --- refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        pytest.param("DRIFT_MONITORING", "sometimes", id="drift-monitoring-not-a-flag"),
        pytest.param("DRIFT_WINDOW", "99", id="drift-window-below-100"),
        pytest.param("DRIFT_WINDOW", "100001", id="drift-window-above-100000"),
        pytest.param("MAX_RECORDS", "many", id="max-records-not-a-number"),
        pytest.param("MAX_RECORDS", "0", id="max-records-zero"),
        pytest.param("MAX_RECORDS", "-3", id="max-records-negative"),
        pytest.param("MAX_RECORDS", "²", id="max-records-superscript-digit"),
        pytest.param("MAX_RECORDS", "٣", id="max-records-arabic-indic-digit"),
        pytest.param("MAX_RECORDS", "+3", id="max-records-with-a-sign"),
        pytest.param("MAX_RECORDS", "3_0", id="max-records-with-an-underscore"),
        pytest.param("DEFAULT_MODEL", "../outside", id="default-model-a-path"),
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
        pytest.param("CAPTURE", "sometimes", id="capture-not-a-flag"),
        pytest.param("CAPTURE_URL", "mysql://db/penguins", id="capture-url-another-database"),
        pytest.param("CAPTURE_URL", "sqlite:///", id="capture-url-no-file"),
        pytest.param("CAPTURE_QUEUE", "0", id="capture-queue-zero"),
        pytest.param("FEEDBACK_WINDOW", "9", id="feedback-window-below-10"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}\b.*\.$"):
        Settings.from_env({variable: value})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"), ("PORT", "0"), ("PORT", "65536"), ("PORT", "-1"),
        ("WEB_CONCURRENCY", "many"), ("WEB_CONCURRENCY", "0"), ("WEB_CONCURRENCY", "1.5"),
        ("KEEP_ALIVE_TIMEOUT", "soon"), ("HEADERS_TIMEOUT", "soon"), ("GRACEFUL_TIMEOUT", "soon"),
        ("HOST", "not a host"),
        ("FORWARDED_ALLOW_IPS", "haproxy"), ("FORWARDED_ALLOW_IPS", "172.16.238.300"),
        ("FORWARDED_ALLOW_IPS", "10.0.0.0/40"), ("FORWARDED_ALLOW_IPS", "127.0.0.1,,::1"),
    ],
)  # fmt: skip
def test_a_bad_server_value_is_refused_naming_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}=.*\.$"):
        ServerSettings.from_env({variable: value})


def test_the_capture_store_defaults_to_sqlite_beside_the_models_folder(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path / "models")
    assert settings.capture and settings.capture_url is None
    assert settings.capture_store_url == f"sqlite:///{tmp_path / 'data' / 'capture' / 'capture.db'}"
    assert Settings.from_env({"CAPTURE_URL": "postgresql://u:p@db/x"}).capture_store_url == "postgresql://u:p@db/x"


def test_a_refused_store_url_is_never_repeated() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"CAPTURE_URL": "mysql://user:secret@db/x"})
    assert "secret" not in str(refused.value) and str(refused.value).startswith("CAPTURE_URL is not")


def test_a_refusal_never_repeats_the_token() -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({"API_TOKEN": "secret words here"})
    assert "secret" not in str(refused.value)


def test_the_server_stops_with_one_line_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAX_RECORDS", "²")
    # SystemExit with a message: Python prints that line to standard error and exits with status 1, no traceback.
    with pytest.raises(SystemExit) as stopped:
        serve()
    assert stopped.value.code == "MAX_RECORDS='²' is not a whole number from 1 to 10000000."


# --- every setting against generated strings --------------------------------------------------------


def whole(low: int, high: int) -> Callable[[str], Any]:
    def meaning(value: str) -> Any:
        return int(value) if re.fullmatch("[0-9]+", value) and low <= int(value) <= high else REFUSED

    return meaning


def words(table: dict[str, Any]) -> Callable[[str], Any]:
    return lambda value: table.get(value.lower(), REFUSED)


def folder(value: str) -> Any:
    """Relative to the working directory; ~ and ~user as a shell expands them."""
    return Path(os.path.expanduser(value)).absolute()


def model_name(value: str) -> Any:
    plain = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", value) and len(value) <= 128
    return value if plain else REFUSED


def token(value: str) -> Any:
    return value if re.fullmatch(r"[\x21-\x7e]{16,}", value) else REFUSED


def host(value: str) -> Any:
    label = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    named = re.fullmatch(rf"{label}(\.{label})*", value) and len(value) <= 253
    return value if named or is_address(value) else REFUSED


def proxies(value: str) -> Any:
    items = [item.strip() for item in value.split(",")]
    return ",".join(items) if all(item == "*" or is_network(item) for item in items) else REFUSED


def store_url(value: str) -> Any:
    schemes = ("sqlite:///", "postgresql://", "postgresql+psycopg://")
    return value if any(value.startswith(scheme) and len(value) > len(scheme) for scheme in schemes) else REFUSED


def is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


REFUSED = object()
ON_OFF = words(
    {word: True for word in ("1", "true", "yes", "on")} | {word: False for word in ("0", "false", "no", "off")}
)
SECONDS = whole(1, 3600)
# What app/README.md's settings table says each one takes, written again here from the table, after the
# surrounding whitespace is dropped; a blank value means the default.
MEANINGS: dict[str, tuple[type[Settings] | type[ServerSettings], Callable[[str], Any]]] = {
    "MODELS_DIR": (Settings, folder),
    "DEFAULT_MODEL": (Settings, model_name),
    "MAX_RECORDS": (Settings, whole(1, 10_000_000)),
    "MAX_BODY_BYTES": (Settings, whole(1, 4_000_000_000)),
    "BODY_TIMEOUT": (Settings, SECONDS),
    "MAX_CONCURRENT_REQUESTS": (Settings, whole(1, 100_000)),
    "API_TOKEN": (Settings, token),
    "STRICT_SKLEARN_VERSION": (Settings, ON_OFF),
    "METRICS": (Settings, ON_OFF),
    "LOG_FORMAT": (Settings, words({"text": "text", "json": "json"})),
    "ACCESS_LOG": (Settings, ON_OFF),
    "SERVED_BY": (Settings, ON_OFF),
    "DRIFT_MONITORING": (Settings, ON_OFF),
    "DRIFT_WINDOW": (Settings, whole(100, 100_000)),
    "CAPTURE": (Settings, ON_OFF),
    "CAPTURE_URL": (Settings, store_url),
    "CAPTURE_QUEUE": (Settings, whole(1, 10_000_000)),
    "CAPTURE_RETENTION_DAYS": (Settings, whole(1, 36_500)),
    "CAPTURE_MAX_ROWS": (Settings, whole(1_000, 1_000_000_000)),
    "FEEDBACK_WINDOW": (Settings, whole(10, 100_000)),
    "ROUTES_SEED": (Settings, whole(0, 4_294_967_295)),
    "SHADOW_QUEUE": (Settings, whole(1, 10_000_000)),
    "HOST": (ServerSettings, host),
    "PORT": (ServerSettings, whole(1, 65535)),
    "WEB_CONCURRENCY": (ServerSettings, whole(1, 64)),
    "KEEP_ALIVE_TIMEOUT": (ServerSettings, SECONDS),
    "HEADERS_TIMEOUT": (ServerSettings, SECONDS),
    "GRACEFUL_TIMEOUT": (ServerSettings, SECONDS),
    "FORWARDED_ALLOW_IPS": (ServerSettings, proxies),
}
# An environment variable holds no NUL; anything else may come.
ANY_TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=40)
NUMBERS = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.integers(0, 10**4000).map(str),
    st.from_regex(r"\s*[+-]?[0-9_.,]{1,12}\s*", fullmatch=True),
    st.text(st.characters(categories=["Nd", "No", "Zs"]), min_size=1, max_size=8),  # other scripts' digits
)
SPELLED = st.sampled_from(
    ["", " ", "\t", "1", "0", "On", "FALSE", "JSON", "text ", "null", "None", "x" * 200, "svc", "~nosuchuser/models"]
)
VALUES = st.one_of(SPELLED, NUMBERS, ANY_TEXT, st.from_regex(r"[\x21-\x7e]{10,30}", fullmatch=True))


@pytest.mark.parametrize("variable", MEANINGS)
@settings(max_examples=60)
@given(value=VALUES)
def test_every_value_is_taken_as_documented_or_refused_in_one_line(variable: str, value: str) -> None:
    kind, meaning = MEANINGS[variable]
    default = getattr(kind.from_env({}), variable.lower())
    expected = default if not value.strip() else meaning(value.strip())
    try:
        taken = revealed(getattr(kind.from_env({variable: value}), variable.lower()))
    except ConfigError as refusal:
        message = str(refusal)
        assert expected is REFUSED, f"{variable}={value!r} refused: {message}"
        assert message.startswith(variable) and message.endswith(".") and "\n" not in message
        return
    assert expected is not REFUSED, f"{variable}={value!r} taken as {taken!r}"
    assert taken == expected


def revealed(value: Any) -> Any:
    return value.get_secret_value() if isinstance(value, SecretStr) else value


# --- each setting named in every place a user meets it ----------------------------------------------


def config_names() -> set[str]:
    return {name.upper() for kind in (Settings, ServerSettings) for name in kind.model_fields}


def test_the_readme_says_what_each_setting_takes_as_a_refusal_does() -> None:
    rows = readme_rows()
    for kind in (Settings, ServerSettings):
        for name, field in kind.model_fields.items():
            assert rows[name.upper()] == field.description, name


def readme_rows() -> dict[str, str]:
    """The settings table of app/README.md: each variable and what its "takes" column says."""
    section = (ROOT / "app" / "README.md").read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split(" | ") for line in section.splitlines() if line.startswith("| `")]
    return {row[0].strip("| `"): row[2] for row in rows}


def compose_api_environment() -> dict[str, str | None]:
    compose = yaml.safe_load((ROOT / "compose" / "docker-compose.yml").read_text())
    entries: list[str] = compose["services"]["api"]["environment"]
    return {name: value or None for name, _, value in (entry.partition("=") for entry in entries)}


def env_example_names() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {match[1] for line in lines if (match := re.match(r"#? ?([A-Z_]+)=", line))}


def test_every_setting_is_documented_passed_through_and_listed() -> None:
    names = config_names()
    assert readme_rows().keys() == names
    environment = compose_api_environment()
    assert environment.keys() == names
    # What the compose file fixes (the folder, the address inside the container) is not a user's to set.
    fixed = {name for name, value in environment.items() if value}
    assert fixed == {"MODELS_DIR", "HOST", "PORT"}
    assert env_example_names() & names == names - fixed
