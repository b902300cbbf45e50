"""Settings, read once from the environment: the app's and the server's. A bad value stops the start, by name."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

from app.logs import LOG_FORMATS, LogFormat
from app.registry import MODEL_NAME_MAX_LENGTH, is_model_name

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("", "0", "false", "no", "off")


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServerSettings:
        workers = environ.get("WEB_CONCURRENCY", "").strip()
        return cls(
            host=environ.get("HOST", "127.0.0.1"),
            port=_whole(environ, "PORT", "8000", 1, 65535),
            workers=_whole(environ, "WEB_CONCURRENCY", workers, 1) if workers else default_workers(),
        )


@dataclass(frozen=True)
class Settings:
    """What the app serves and how."""

    models_dir: Path
    default_model: str = "random_forest"
    max_records: int = 10_000
    metrics: bool = True
    log_format: LogFormat = "text"
    # Off unless asked for, as in gunicorn: the README's performance section says what a line per request costs.
    access_log: bool = False

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            models_dir=_models_dir(environ.get("MODELS_DIR", "models")),
            default_model=_default_model(environ.get("DEFAULT_MODEL", "random_forest")),
            max_records=_whole(environ, "MAX_RECORDS", "10000", 1),
            metrics=_flag(environ, "METRICS", True),
            log_format=log_format(environ),
            access_log=_flag(environ, "ACCESS_LOG", False),
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


def _whole(environ: Mapping[str, str], key: str, default: str, low: int, high: int | None = None) -> int:
    value = environ.get(key, default).strip()
    number = int(value) if value.isdigit() else -1
    if number < low or (high is not None and number > high):
        bounds = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ConfigError(f"{key}={value!r} is not a whole number {bounds}.")
    return number


def _flag(environ: Mapping[str, str], key: str, default: bool) -> bool:
    value = environ.get(key, "").strip().lower()
    if not value:
        return default
    if value not in TRUE_WORDS + FALSE_WORDS:
        raise ConfigError(
            f"{key}={value!r} is not one of {', '.join(TRUE_WORDS[:2])} or {', '.join(FALSE_WORDS[1:3])}."
        )
    return value in TRUE_WORDS
