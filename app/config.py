"""Settings, read once from the environment: the app's and the server's. A bad value stops the start, by name.

Each field is read from the environment variable of the same name in capitals (`max_records`: MAX_RECORDS) and
validated by pydantic; an unset or blank variable means the default. A value that does not fit is refused with
one sentence naming the variable and what it accepts, the field's description:
`MAX_RECORDS='ten' is not a whole number from 1 to 10000000.`
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, ValidationError

from app.rules import LOG_FORMATS, MIN_RECORDS, MODEL_NAME_MAX_LENGTH, LogFormat, is_model_name

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")
# A pretty-printed record with full-precision floats takes about 280 bytes of JSON, a compact one 134:
# MAX_RECORDS records fit with room in either form.
BODY_BYTES_PER_RECORD = 400
TOKEN_MIN_LENGTH = 16
WORKER_HEALTHCHECK_SECONDS = 30
# ASCII digits only, once the surrounding spaces are stripped (" 3 " is 3, as for every setting): int() would also
# take "٣", "+3" and "3_0", which nobody means in a setting.
WHOLE_NUMBER = re.compile(r"[0-9]+")
# Visible ASCII: a token travels in an HTTP header, where anything else is not portable.
TOKEN = re.compile(rf"[\x21-\x7e]{{{TOKEN_MIN_LENGTH},}}")
# A host name as RFC 1123 writes it, or an IP address (checked apart).
HOST_NAME = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# The capture stores (app/capture/store.py): an SQLite file, or PostgreSQL through psycopg 3.
STORE_SCHEMES = ("sqlite:///", "postgresql://", "postgresql+psycopg://")
# How much of a refused value the refusal repeats.
SHOWN_CHARACTERS = 40
# A field whose value a refusal never repeats.
SECRET: dict[str, Any] = {"secret": True}


class ConfigError(ValueError):
    """An environment variable holds a value the app cannot start with."""


def default_workers() -> int:
    # The CPUs this process may run on (a container's --cpuset, not the host's count) where the system says.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(cpus, 4)


def _whole_number(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    digits = value.strip()
    if not WHOLE_NUMBER.fullmatch(digits):
        raise ValueError("not a whole number")
    return int(digits)


def _flag(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise ValueError("not an on/off word")
    return word in TRUE_WORDS


def _word(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


def _stripped(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _model_name(value: str) -> str:
    if not is_model_name(value):
        raise ValueError("not a plain model file name")
    return value


def _host(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not HOST_NAME.fullmatch(value):
            raise ValueError("not a host") from None
    return value


def _token(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not TOKEN.fullmatch(value.get_secret_value()):
        raise ValueError("not a token")
    return value


def _store_url(value: str | None) -> str | None:
    if value is not None and not any(value.startswith(s) and len(value) > len(s) for s in STORE_SCHEMES):
        raise ValueError("not a store URL")
    return value


def _addresses(value: str) -> str:
    items = [item.strip() for item in value.split(",")]
    if not all(item == "*" or _is_network(item) for item in items):
        raise ValueError("not addresses")
    return ",".join(items)


def _is_network(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def _absolute(path: Path) -> Path:
    # Absolute once, so the containment check compares like with like whatever the cwd later is. ~ and ~user as a
    # shell expands them: a user without a known home leaves the path as written (Path.expanduser would raise).
    return Path(os.path.expanduser(path)).absolute()


Whole = Annotated[int, BeforeValidator(_whole_number)]
Flag = Annotated[bool, BeforeValidator(_flag)]
ON_OFF = f"one of {', '.join(TRUE_WORDS)} or {', '.join(FALSE_WORDS)}"


def number(default: int | None, low: int, high: int, unit: str = "") -> Any:
    """A whole-number field: its bounds, and the description a refusal quotes, from one place."""
    return Field(default=default, ge=low, le=high, description=f"a whole number{unit} from {low} to {high}")


def seconds(default: int) -> Any:
    return number(default, 1, 3600, " of seconds")


def flag(default: bool) -> Any:
    return Field(default=default, description=ON_OFF)


class EnvironmentSettings(BaseModel):
    """Fields read from the environment by from_env; each field's description says what it accepts."""

    # validate_default: a default passes the same validators as a value read (MODELS_DIR made absolute).
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        given = {name: environ[name.upper()] for name in cls.model_fields if environ.get(name.upper(), "").strip()}
        try:
            return cls.model_validate(given)
        except ValidationError as error:
            raise ConfigError(cls.refusal(error, given)) from None

    @classmethod
    def refusal(cls, error: ValidationError, given: Mapping[str, str]) -> str:
        """One sentence for the first bad value: the variable, the value (never a secret's), what it accepts."""
        name = str(error.errors()[0]["loc"][0])
        field = cls.model_fields[name]
        if field.json_schema_extra == SECRET:
            return f"{name.upper()} is not {field.description}."
        return f"{name.upper()}={given[name][:SHOWN_CHARACTERS]!r} is not {field.description}."


class ServerSettings(EnvironmentSettings):
    """How `python -m app` runs uvicorn."""

    host: Annotated[str, BeforeValidator(_stripped), AfterValidator(_host)] = Field(
        "127.0.0.1", description="an IP address or a host name"
    )
    port: Whole = number(8000, 1, 65535)
    # Worker processes; the CPUs this process may use, at most 4, when unset.
    web_concurrency: Whole = Field(
        default_factory=default_workers, ge=1, le=64, description="a whole number from 1 to 64"
    )
    # Seconds an idle connection stays open between requests.
    keep_alive_timeout: Whole = seconds(5)
    # Seconds a client has to send a request's head (request line and headers).
    headers_timeout: Whole = seconds(10)
    # Below Docker's 10 s between SIGTERM and SIGKILL, so requests in flight finish before a `docker stop` kills.
    graceful_timeout: Whole = seconds(8)
    # The proxies whose X-Forwarded-For names the client (uvicorn's proxy headers).
    forwarded_allow_ips: Annotated[str, BeforeValidator(_stripped), AfterValidator(_addresses)] = Field(
        default="127.0.0.1,::1",
        description="IP addresses or networks (CIDR), separated by commas, or *",
    )

    def uvicorn_options(self) -> dict[str, Any]:
        """uvicorn.run's keyword arguments for these settings (the head deadline is the protocol's own)."""
        return {
            "host": self.host,
            "port": self.port,
            "workers": self.web_concurrency,
            "timeout_keep_alive": self.keep_alive_timeout,
            "timeout_graceful_shutdown": self.graceful_timeout,
            "forwarded_allow_ips": self.forwarded_allow_ips,
            # A new worker imports scikit-learn before it can answer the supervisor's ping; on a busy machine
            # that takes longer than uvicorn's 5 s, and the supervisor would kill it as hung, again and again.
            "timeout_worker_healthcheck": WORKER_HEALTHCHECK_SECONDS,
        }


class Settings(EnvironmentSettings):
    """What the app serves and how."""

    models_dir: Annotated[Path, BeforeValidator(_stripped), AfterValidator(_absolute)] = Field(
        default=Path("models"), description="a folder path"
    )
    default_model: Annotated[str, BeforeValidator(_stripped), AfterValidator(_model_name)] = Field(
        default="random_forest",
        description=f"a plain model file name (letters, digits, '.', '_', '-', at most {MODEL_NAME_MAX_LENGTH} "
        "characters, starting with a letter or digit)",
    )
    max_records: Whole = number(10_000, 1, 10_000_000)
    # None: BODY_BYTES_PER_RECORD for each of max_records.
    max_body_bytes: Whole | None = number(None, 1, 4_000_000_000, " of bytes")
    # Seconds a client has to send a request's whole body.
    body_timeout: Whole = seconds(30)
    # Per worker; beyond it, 503 at once.
    max_concurrent_requests: Whole = number(64, 1, 100_000)
    # A SecretStr: printed, logged or repr'd, the settings show '**********', never the token.
    api_token: Annotated[SecretStr | None, BeforeValidator(_stripped), AfterValidator(_token)] = Field(
        default=None,
        description=f"{TOKEN_MIN_LENGTH} or more visible ASCII characters, no spaces "
        "(a long random string: openssl rand -hex 24)",
        json_schema_extra=SECRET,
    )
    strict_sklearn_version: Flag = flag(False)
    metrics: Flag = flag(True)
    log_format: Annotated[LogFormat, BeforeValidator(_word)] = Field(
        default="text", description=f"one of {', '.join(LOG_FORMATS)}"
    )
    # Off unless asked for, as in gunicorn: app/README.md's performance section says what a line per request costs.
    access_log: Flag = flag(False)
    # X-Served-By on every answer: this host's name, which tells replicas behind a load balancer apart.
    served_by: Flag = flag(False)
    # Count every prediction against its model's reference profile (app/monitoring/).
    drift_monitoring: Flag = flag(True)
    # The last records per model the drift figures are computed on: at least what a PSI needs to be judged, at most
    # what /tmp holds easily (about 60 bytes a record and model).
    drift_window: Whole = number(1000, MIN_RECORDS, 100_000)
    # Every prediction recorded with its features, and labels joined to it later (app/capture/).
    capture: Flag = flag(True)
    # None: an SQLite file in data/capture/ beside the models folder (capture_store_url).
    capture_url: Annotated[str | None, BeforeValidator(_stripped), AfterValidator(_store_url)] = Field(
        default=None,
        description="sqlite:///path or postgresql://user:password@host:port/database",
        json_schema_extra=SECRET,
    )
    # Records waiting to be written, per worker: what a killed worker can lose, and the queue's memory bound.
    capture_queue: Whole = number(100_000, 1, 10_000_000)
    capture_retention_days: Whole = number(30, 1, 36_500, " of days")
    capture_max_rows: Whole = number(1_000_000, 1_000, 1_000_000_000)
    # The last labelled records per model version the live accuracy is computed on.
    feedback_window: Whole = number(1000, 10, 100_000)
    # None: each worker's route choices start from a seed of its own (app/routes.py); a number makes them repeatable.
    routes_seed: Whole | None = number(None, 0, 4_294_967_295)
    # Records waiting for a route's shadows to predict them, per worker: beyond it shadow work is dropped and counted.
    shadow_queue: Whole = number(10_000, 1, 10_000_000)

    @property
    def body_limit(self) -> int:
        return self.max_body_bytes or BODY_BYTES_PER_RECORD * self.max_records

    @property
    def capture_store_url(self) -> str:
        """CAPTURE_URL, else data/capture/capture.db beside the models folder (models/ and data/ are siblings)."""
        return self.capture_url or f"sqlite:///{self.models_dir.parent / 'data' / 'capture' / 'capture.db'}"
