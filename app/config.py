"""Settings, read once from the environment: the app's and the server's. A bad value stops the start, by name."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from app.logs import LOG_FORMATS, LogFormat
from app.registry import MODEL_NAME_MAX_LENGTH, is_model_name

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")
# A pretty-printed record with full-precision floats takes about 280 bytes of JSON, a compact one 134:
# MAX_RECORDS records fit with room in either form.
BODY_BYTES_PER_RECORD = 400
TOKEN_MIN_LENGTH = 16
WORKER_HEALTHCHECK_SECONDS = 30


class ConfigError(ValueError):
    """An environment variable holds a value the app cannot start with."""


def default_workers() -> int:
    # The CPUs this process may run on: a container's --cpuset, not the host's count.
    return min(len(os.sched_getaffinity(0)), 4)


@dataclass(frozen=True)
class ServerSettings:
    """How `python -m app` runs uvicorn."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = field(default_factory=default_workers)
    keep_alive_timeout: int = 5  # seconds an idle connection stays open between requests
    headers_timeout: int = 10  # seconds a client has to send a request's head (request line and headers)
    # Below Docker's 10 s between SIGTERM and SIGKILL, so requests in flight finish before a `docker stop` kills.
    graceful_timeout: int = 8
    # The proxies whose X-Forwarded-For names the client (uvicorn's proxy headers): addresses or networks, or *.
    forwarded_allow_ips: str = "127.0.0.1,::1"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        workers = environ.get("WEB_CONCURRENCY", "").strip()
        return cls(
            host=environ.get("HOST", "127.0.0.1"),
            port=_whole(environ, "PORT", "8000", 1, 65535),
            workers=_whole(environ, "WEB_CONCURRENCY", workers, 1) if workers else default_workers(),
            keep_alive_timeout=_whole(environ, "KEEP_ALIVE_TIMEOUT", "5", 1),
            headers_timeout=_whole(environ, "HEADERS_TIMEOUT", "10", 1),
            graceful_timeout=_whole(environ, "GRACEFUL_TIMEOUT", "8", 1),
            forwarded_allow_ips=_addresses(environ, "FORWARDED_ALLOW_IPS", "127.0.0.1,::1"),
        )

    def uvicorn_options(self) -> dict[str, Any]:
        """uvicorn.run's keyword arguments for these settings (the head deadline is the protocol's own)."""
        return {
            "host": self.host,
            "port": self.port,
            "workers": self.workers,
            "timeout_keep_alive": self.keep_alive_timeout,
            "timeout_graceful_shutdown": self.graceful_timeout,
            "forwarded_allow_ips": self.forwarded_allow_ips,
            # A new worker imports scikit-learn before it can answer the supervisor's ping; on a busy machine
            # that takes longer than uvicorn's 5 s, and the supervisor would kill it as hung, again and again.
            "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS,
        }


@dataclass(frozen=True)
class Settings:
    """What the app serves and how."""

    models_dir: Path
    default_model: str = "random_forest"
    max_records: int = 10_000
    max_body_bytes: int | None = None  # None: BODY_BYTES_PER_RECORD for each of max_records
    body_timeout: int = 30  # seconds a client has to send a request's whole body
    max_concurrent_requests: int = 64  # per worker; beyond it, 503 at once
    api_token: str | None = None
    strict_sklearn_version: bool = False
    metrics: bool = True
    log_format: LogFormat = "text"
    # Off unless asked for, as in gunicorn: app/README.md's performance section says what a line per request costs.
    access_log: bool = False
    # X-Served-By on every answer: this host's name, which tells replicas behind a load balancer apart.
    served_by: bool = False

    @property
    def body_limit(self) -> int:
        return self.max_body_bytes or BODY_BYTES_PER_RECORD * self.max_records

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            models_dir=_models_dir(environ.get("MODELS_DIR", "models")),
            default_model=_default_model(environ.get("DEFAULT_MODEL", "random_forest")),
            max_records=_whole(environ, "MAX_RECORDS", "10000", 1),
            max_body_bytes=_whole(environ, "MAX_BODY_BYTES", "", 1) if _is_set(environ, "MAX_BODY_BYTES") else None,
            body_timeout=_whole(environ, "BODY_TIMEOUT", "30", 1),
            max_concurrent_requests=_whole(environ, "MAX_CONCURRENT_REQUESTS", "64", 1),
            api_token=_token(environ.get("API_TOKEN", "")),
            strict_sklearn_version=_flag(environ, "STRICT_SKLEARN_VERSION", False),
            metrics=_flag(environ, "METRICS", True),
            log_format=log_format(environ),
            access_log=_flag(environ, "ACCESS_LOG", False),
            served_by=_flag(environ, "SERVED_BY", False),
        )


def log_format(environ: Mapping[str, str] = os.environ) -> LogFormat:
    value = environ.get("LOG_FORMAT", "text").strip().lower() or "text"
    if value not in LOG_FORMATS:
        raise ConfigError(f"LOG_FORMAT={value!r} is not one of {', '.join(LOG_FORMATS)}.")
    return cast(LogFormat, value)


def _models_dir(value: str) -> Path:
    if not value.strip():
        raise ConfigError("MODELS_DIR is empty; set it to the folder holding the model files.")
    # Absolute once, so the containment check compares like with like whatever the cwd later is.
    return Path(value).expanduser().absolute()


def _default_model(value: str) -> str:
    if not is_model_name(value):
        raise ConfigError(
            f"DEFAULT_MODEL={value!r} is not a plain model file name "
            f"(letters, digits, '.', '_', '-', at most {MODEL_NAME_MAX_LENGTH} characters)."
        )
    return value


def _is_set(environ: Mapping[str, str], key: str) -> bool:
    return bool(environ.get(key, "").strip())


def _token(value: str) -> str | None:
    token = value.strip()
    if not token:
        return None
    if len(token) < TOKEN_MIN_LENGTH or any(character.isspace() for character in token):
        raise ConfigError(
            f"API_TOKEN is shorter than {TOKEN_MIN_LENGTH} characters or holds spaces; "
            "use a long random string (openssl rand -hex 24)."
        )
    return token


def _whole(environ: Mapping[str, str], key: str, default: str, low: int, high: int | None = None) -> int:
    value = environ.get(key, default).strip()
    number = int(value) if value.isdigit() else -1
    if number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ConfigError(f"{key}={value!r} is not a whole number {bounds}.")
    return number


def _addresses(environ: Mapping[str, str], key: str, default: str) -> str:
    value = environ.get(key, "").strip() or default
    items = [item.strip() for item in value.split(",")]
    if not all(item == "*" or _is_network(item) for item in items):
        raise ConfigError(f"{key}={value!r} is not a comma-separated list of IP addresses, networks (CIDR) or *.")
    return ",".join(items)


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _flag(environ: Mapping[str, str], key: str, default: bool) -> bool:
    value = environ.get(key, "").strip().lower()
    if not value:
        return default
    if value not in TRUE_WORDS + FALSE_WORDS:
        raise ConfigError(
            f"{key}={value!r} is not one of {', '.join(TRUE_WORDS[:2])} or {', '.join(FALSE_WORDS[1:3])}."
        )
    return value in TRUE_WORDS
