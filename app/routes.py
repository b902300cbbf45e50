"""Routes: a name that sends each request to one of several model files, by weight, read from <MODELS_DIR>/routes.json.

The file is re-read when its stamp changes, as the registry re-reads a model file; a request looks at the stamp
when a millisecond has passed since it was last looked at (CHECK_SECONDS). A file that does not parse or
validate keeps the last good routes: one log line per bad version, and `problem` says why until a good one comes.
A request's variant: a point u in [0, 1) — random, or a stable hash of its sticky header's value — and the variant
whose cumulative share holds it, in the file's order; so a weight change moves only the points in the moved share.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from app.errors import ServingError
from app.modelfile import Stamp
from app.rules import MODEL_NAME_MAX_LENGTH, SUFFIX, is_model_name

ROUTES_FILE = "routes.json"
# A request through a route looks at the file when this long has passed since it was last looked at: a change is
# served within a millisecond, and a worker under load pays one stat a millisecond instead of one a request.
CHECK_SECONDS = 0.001
# A routes file is a few lines; anything this big is a mistake, refused before it is read.
MAX_FILE_BYTES = 1_000_000
# An HTTP header name (RFC 9110 token).
HEADER_NAME = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
logger = logging.getLogger("app")
Weight = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]


class RouteSpec(BaseModel):
    """One route as the file writes it: variants (model files without .pkl) with weights, shadows, a sticky header."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variants: dict[str, Weight] = Field(min_length=1)
    shadows: list[str] = []
    sticky_header: Annotated[str, Field(pattern=HEADER_NAME, max_length=256)] | None = None

    @field_validator("variants")
    @classmethod
    def _weighted(cls, variants: dict[str, float]) -> dict[str, float]:
        _names(variants)
        if not any(weight > 0 for weight in variants.values()):
            raise ValueError("at least one weight must be above 0")
        return variants

    @model_validator(mode="after")
    def _apart(self) -> Self:
        _names(self.shadows)
        both = sorted(set(self.variants) & set(self.shadows))
        if both:
            raise ValueError(f"{', '.join(both)} cannot be both a variant and a shadow")
        if len(set(self.shadows)) != len(self.shadows):
            raise ValueError("a shadow is named twice")
        return self

    @field_serializer("variants")
    def _whole_weights(self, variants: dict[str, float]) -> dict[str, float | int]:
        """90, not 90.0, as a person writes it."""
        return {name: int(weight) if weight.is_integer() else weight for name, weight in variants.items()}

    def files(self) -> list[str]:
        return [*self.variants, *self.shadows]


class RoutesFile(BaseModel):
    """routes.json: the routes served, and each route as it was before its last change (what a rollback restores).

    Validated with context {"models": the model files' stems} when there is one: the routes' names must not be a
    model's, their variants and shadows must be. `previous` is checked only when it comes back.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    routes: dict[str, RouteSpec] = {}
    previous: dict[str, RouteSpec] = {}

    @model_validator(mode="after")
    def _fits_folder(self, info: ValidationInfo) -> Self:
        _names([*self.routes, *self.previous], "route name")
        models = (info.context or {}).get("models")
        if models is None:
            return self
        clashing = sorted(set(self.routes) & set(models))
        if clashing:
            raise ValueError(f"route {clashing[0]!r} has the name of a model file ({clashing[0]}{SUFFIX})")
        for name, route in self.routes.items():
            missing = [file for file in route.files() if file not in models]
            if missing:
                raise ValueError(f"route {name!r} names {missing[0]!r}, which is not a model file in the folder")
        return self

    @classmethod
    def parse(cls, content: str | bytes, models: Iterable[str] | None = None) -> RoutesFile:
        """The file validated; against the folder's model stems when given. ValueError says what is wrong."""
        context = None if models is None else {"models": set(models)}
        try:
            return cls.model_validate_json(content, context=context)
        except ValidationError as error:
            raise ValueError(first_error(error)) from None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_defaults=True) + "\n"


@dataclass(frozen=True)
class Route:
    """A route served: its variants with their cumulative upper bounds in [0, 1], in the file's order."""

    name: str
    spec: RouteSpec
    bounds: tuple[tuple[float, str], ...] = field(init=False)  # (upper bound, variant), the weighted ones
    only: str | None = field(init=False)  # the one variant with a weight, when there is one: no draw needed

    def __post_init__(self) -> None:
        total = sum(self.spec.variants.values())
        reached, bounds = 0.0, []
        for name, weight in self.spec.variants.items():
            reached += weight
            if weight > 0:
                bounds.append((reached / total, name))
        object.__setattr__(self, "bounds", tuple(bounds))
        object.__setattr__(self, "only", bounds[0][1] if len(bounds) == 1 else None)

    @property
    def sticky_header(self) -> str | None:
        return self.spec.sticky_header

    @property
    def weighted(self) -> list[str]:
        """The variants a request can reach: those with a weight above 0."""
        return [name for _, name in self.bounds]

    def shares(self) -> dict[str, float]:
        total = sum(self.spec.variants.values())
        return {name: weight / total for name, weight in self.spec.variants.items()}

    def variant_at(self, point: float) -> str:
        """The variant whose interval [lower, upper) holds the point; intervals follow the file's order."""
        for upper, name in self.bounds:
            if point < upper:
                return name
        return self.bounds[-1][1]  # a point past the last bound only by rounding


def sticky_point(value: str) -> float:
    """A header value's stable point in [0, 1): the same in every process (never Python's salted hash())."""
    return int.from_bytes(hashlib.sha256(value.encode()).digest()[:8], "big") / 2**64


class Routes:
    """The routes in <folder>/routes.json now: re-read when the file's stamp changes; the last good ones kept.

    models: the folder's model file names now (a scan; a ServingError when it cannot be read), to check a new file
    against; seed: the random points'.
    """

    def __init__(self, folder: Path, models: Callable[[], list[str]], seed: int | None = None) -> None:
        self.path = folder / ROUTES_FILE
        self._path = str(self.path)  # stat()ed at every request that names a route: converted once
        self.models = models
        self.random = random.Random(seed)
        self.problem: str | None = None  # why the file now in the folder is refused; None when it is served
        self._routes: dict[str, Route] = {}
        self._stamp: Stamp | None = None
        self._checked = -CHECK_SECONDS  # when the file was last looked at (time.monotonic)
        self._lock = threading.Lock()

    def current(self) -> dict[str, Route]:
        """The routes served, by name (one stat; a read and a folder scan when the file changed)."""
        self._checked = time.monotonic()
        stamp = self._file_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    self._reload(stamp)
        return self._routes

    def get(self, name: str) -> Route | None:
        """The route of that name now (the file looked at if CHECK_SECONDS have passed since it last was), or None.

        A name that is not plain is never a route's: the file's names are checked when it is read.
        """
        if time.monotonic() - self._checked >= CHECK_SECONDS:
            self.current()
        return self._routes.get(name)

    def known(self, name: str) -> Route | None:
        """The route of that name among those served so far, without looking at the file (no stat)."""
        return self._routes.get(name)

    def choose(self, route: Route, sticky_value: str | None) -> str:
        """The variant for one request: by the sticky header's value when given, else at random."""
        if route.only is not None:
            return route.only
        point = self.random.random() if sticky_value is None else sticky_point(sticky_value)
        return route.variant_at(point)

    def _file_stamp(self) -> Stamp | None:
        try:
            return Stamp.of(os.stat(self._path))
        except FileNotFoundError:
            return None
        except OSError:
            # The folder cannot be read for now (a remount, permissions): keep what is served.
            return self._stamp

    def _reload(self, stamp: Stamp | None) -> None:
        if stamp is None:
            if self._routes:
                logger.info("%s is gone: no routes are served", self.path.name)
            self._stamp, self._routes, self.problem = None, {}, None
            return
        try:
            models = [name.removesuffix(SUFFIX) for name in self.models()]
        except ServingError:
            return  # the folder cannot be listed now: what is served stays, and the next request tries again
        self._stamp = stamp
        try:
            routes = self._read(stamp, models)
        except ValueError as error:
            self.problem = f"{ROUTES_FILE} refused: {error}; " + (
                "the last good routes are served" if self._routes else "no routes are served"
            )
            logger.error("%s", self.problem)
            return
        self._routes, self.problem = routes, None
        logger.info("routes from %s: %s", ROUTES_FILE, ", ".join(routes) or "none")

    def _read(self, stamp: Stamp, models: list[str]) -> dict[str, Route]:
        if stamp.size > MAX_FILE_BYTES:
            raise ValueError(f"it is {stamp.size} bytes, over {MAX_FILE_BYTES}")
        try:
            content = self.path.read_bytes()
        except OSError as error:
            raise ValueError(f"it cannot be read ({(error.strerror or type(error).__name__).lower()})") from None
        parsed = RoutesFile.parse(content, models)
        return {name: Route(name, spec) for name, spec in parsed.routes.items()}


def _names(names: Iterable[str], kind: str = "model name") -> None:
    for name in names:
        if not is_model_name(name) or name.endswith(SUFFIX):
            raise ValueError(
                f"{kind} {name[:MODEL_NAME_MAX_LENGTH]!r} is not a plain name: letters, digits, '.', '_' or '-', "
                f"starting with a letter or digit, at most {MODEL_NAME_MAX_LENGTH} characters, without {SUFFIX}"
            )


def first_error(error: ValidationError) -> str:
    """A refusal's first reason in one line: where, and what is wrong."""
    item = error.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in item["loc"])
    message: str = item["msg"].removeprefix("Value error, ")
    if item["type"] == "json_invalid":
        return f"it is not valid JSON ({item['ctx'].get('error', message) if 'ctx' in item else message})"
    return f"{where}: {message}" if where else message


def plain(route: Route) -> dict[str, Any]:
    """A route as the listings show it: its variants with their weights, its shadows, its sticky header."""
    return {"name": route.name, **route.spec.model_dump()}
