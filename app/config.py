"""Settings read once from the environment; a bad value stops the app at start."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# A model name is a plain file name: no separators, no leading dot, so never a path.
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
MODEL_NAME_MAX_LENGTH = 128


class ConfigError(ValueError):
    """An environment variable holds a value the app cannot start with."""


@dataclass(frozen=True)
class Settings:
    models_dir: Path
    default_model: str
    max_records: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        return cls(
            models_dir=_models_dir(environ.get("MODELS_DIR", "models")),
            default_model=_default_model(environ.get("DEFAULT_MODEL", "random_forest")),
            max_records=_max_records(environ.get("MAX_RECORDS", "10000")),
        )


def is_model_name(value: str) -> bool:
    return len(value) <= MODEL_NAME_MAX_LENGTH and MODEL_NAME_PATTERN.fullmatch(value) is not None


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


def _max_records(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ConfigError(f"MAX_RECORDS={value!r} is not a positive whole number.")
    return number
