"""What /predict and /predict/compare do, between the raw body and the answer.

CPU-bound work leaves the event loop, except where a thread hop would cost more than the work
itself: a cached model whose measured cost for this many records fits INLINE_BUDGET_SECONDS
(logistic regression on one record: about 0.1 ms, a hop costs about as much again).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool

from app.config import Settings
from app.errors import ApiError, ModelLoadFailed, ModelNotFound, ModelPredictFailed, RequestInvalid, TooManyRecords
from app.predictors import Batch
from app.registry import LoadedModel, Registry
from app.schemas import CompareRequest, PenguinRecord, PredictRequest

INLINE_BUDGET_SECONDS = 0.0005
INLINE_BODY_BYTES = 16_384  # about 80 records: parse bigger bodies in a worker thread
RequestT = TypeVar("RequestT", bound=BaseModel)
T = TypeVar("T")


class Parser(Generic[RequestT]):
    """Validates a raw body straight from bytes; more than max_records records is a 413, not a 422."""

    def __init__(self, model: type[RequestT], max_records: int) -> None:
        records = Annotated[list[PenguinRecord], Field(min_length=1, max_length=max_records)]
        # The length is checked before the items are: an oversized body is refused cheaply.
        self.model: type[RequestT] = create_model(model.__name__, __base__=model, records=(records, ...))
        self.max_records = max_records

    def parse(self, body: bytes) -> RequestT:
        try:
            return self.model.model_validate_json(body)
        except ValidationError as error:
            for item in error.errors(include_url=False, include_input=False):
                if item["type"] == "too_long" and item["loc"] == ("records",):
                    raise TooManyRecords(
                        f"Got {item['ctx']['actual_length']} records; at most MAX_RECORDS={self.max_records} "
                        "are accepted per request."
                    ) from None
            raise RequestInvalid.from_pydantic(error, "body") from None


@dataclass(frozen=True)
class Inference:
    settings: Settings
    registry: Registry
    predict_parser: Parser[PredictRequest]
    compare_parser: Parser[CompareRequest]

    @classmethod
    def create(cls, settings: Settings) -> Inference:
        return cls(
            settings,
            Registry(settings.models_dir),
            Parser(PredictRequest, settings.max_records),
            Parser(CompareRequest, settings.max_records),
        )

    async def model(self, name: str) -> LoadedModel:
        cached = self.registry.cached(name)
        return cached if cached is not None else await run_in_threadpool(self.registry.get, name)

    async def predict(self, body: bytes, query_model: str | None) -> dict[str, Any]:
        request = await _call(len(body) <= INLINE_BODY_BYTES, self.predict_parser.parse, body)
        name = query_model if query_model is not None else request.model or self.settings.default_model
        model = await self.model(name)
        inline = model.estimated_seconds(len(request.records)) <= INLINE_BUDGET_SECONDS
        return await _call(inline, answer, model, request.records)

    async def compare(self, body: bytes, query_models: list[str]) -> dict[str, Any]:
        request = await _call(len(body) <= INLINE_BODY_BYTES, self.compare_parser.parse, body)
        names = split_names(query_models) if query_models else request.models
        requested = names is not None
        file_names = list(dict.fromkeys(map(self.registry.file_name, names or self.registry.available())))
        # Every name is checked (400, 404) before anything is loaded or predicted.
        cached = {file_name: self._cached_or_missing(file_name, requested) for file_name in file_names}
        models: dict[str, LoadedModel | None] = cached
        skipped: dict[str, str] = {}
        if None in cached.values():
            models, skipped = await run_in_threadpool(self._load_all, cached, requested)
        ready = [model for model in models.values() if model is not None]
        cost = sum(model.estimated_seconds(len(request.records)) for model in ready)
        results = await _call(cost <= INLINE_BUDGET_SECONDS, answer_all, ready, request.records)
        return {"results": results, "skipped": skipped}

    def _cached_or_missing(self, file_name: str, requested: bool) -> LoadedModel | None:
        try:
            return self.registry.cached(file_name)
        except (ModelLoadFailed, ModelNotFound):
            if requested:
                raise
            return None

    def _load_all(
        self, cached: dict[str, LoadedModel | None], requested: bool
    ) -> tuple[dict[str, LoadedModel | None], dict[str, str]]:
        models: dict[str, LoadedModel | None] = {}
        skipped: dict[str, str] = {}
        for file_name, model in cached.items():
            try:
                models[file_name] = model or self.registry.get(file_name)
            except ApiError as error:
                # A default run (every model) leaves out what cannot load, and says so; a named one fails.
                if requested:
                    raise
                skipped[file_name] = error.detail
        return models, skipped


def split_names(values: Sequence[str]) -> list[str]:
    """?models=a&models=b and ?models=a,b alike."""
    return [part.strip() for value in values for part in value.split(",")]


def answer(model: LoadedModel, records: Sequence[PenguinRecord]) -> dict[str, Any]:
    return {"model": model.name, **_predict(model, Batch.from_records(records))}


def answer_all(models: Sequence[LoadedModel], records: Sequence[PenguinRecord]) -> dict[str, Any]:
    batch = Batch.from_records(records)
    return {model.name: {"model": model.name, **_predict(model, batch)} for model in models}


def _predict(model: LoadedModel, batch: Batch) -> dict[str, Any]:
    try:
        return model.predictor.predict(batch)
    except Exception as error:
        raise ModelPredictFailed(f"Model {model.name} failed to predict: {type(error).__name__}: {error}") from error


async def _call(inline: bool, function: Callable[..., T], *args: Any) -> T:
    return function(*args) if inline else await run_in_threadpool(function, *args)
