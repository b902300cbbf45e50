"""app/config.py ServerSettings: how `python -m app` runs uvicorn; a bad value refused by name."""

from __future__ import annotations

import pytest

from app.config import ConfigError, ServerSettings, default_workers


def test_defaults() -> None:
    server = ServerSettings.from_env({})
    assert (server.host, server.port, server.workers) == ("127.0.0.1", 8000, default_workers())
    assert 1 <= default_workers() <= 4


def test_timeouts_default_and_come_from_the_environment() -> None:
    server = ServerSettings.from_env({})
    assert (server.keep_alive_timeout, server.headers_timeout, server.graceful_timeout) == (5, 10, 8)
    environ = {"KEEP_ALIVE_TIMEOUT": "2", "HEADERS_TIMEOUT": "3", "GRACEFUL_TIMEOUT": "4"}
    options = ServerSettings.from_env(environ).uvicorn_options()
    assert (options["timeout_keep_alive"], options["timeout_graceful_shutdown"]) == (2, 4)
    assert ServerSettings.from_env(environ).headers_timeout == 3


@pytest.mark.parametrize("variable", ["KEEP_ALIVE_TIMEOUT", "HEADERS_TIMEOUT", "GRACEFUL_TIMEOUT"])
def test_a_bad_timeout_is_refused_by_name(variable: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{variable}="):
        ServerSettings.from_env({variable: "soon"})


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


def test_only_loopback_proxies_are_trusted_by_default() -> None:
    assert ServerSettings.from_env({}).uvicorn_options()["forwarded_allow_ips"] == "127.0.0.1,::1"


def test_trusted_proxies_come_from_the_environment() -> None:
    server = ServerSettings.from_env({"FORWARDED_ALLOW_IPS": " 172.16.238.2, 10.0.0.0/8 ,* "})
    assert server.uvicorn_options()["forwarded_allow_ips"] == "172.16.238.2,10.0.0.0/8,*"


@pytest.mark.parametrize("value", ["haproxy", "172.16.238.300", "10.0.0.0/40", "127.0.0.1,,::1"])
def test_a_trusted_proxy_that_is_no_address_is_refused_by_name(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^FORWARDED_ALLOW_IPS="):
        ServerSettings.from_env({"FORWARDED_ALLOW_IPS": value})
