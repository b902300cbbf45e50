"""The protocol-neutral core: models by name, batches in, predictions out. No HTTP, no JSON, no threads.

Every front-end (app/original/, app/v2/) parses its own dialect into these calls and writes the answers
back in its own shape. The blocking calls (load, select, predict, ready) are the front-end's to place on a
thread or not.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from app.capture import Performance, Recorder
from app.config import Settings
from app.errors import ModelLoadFailed, ModelNotFound, ModelPredictFailed, ServingError, TooManyRecords
from app.features import Batch
from app.logs import request_id_or_new
from app.modelfile import Stamp
from app.monitoring.figures import DriftReport
from app.monitoring.monitor import Monitor
from app.observer import Observer
from app.predictors import Prediction
from app.registry import LoadedModel, Registry
from app.routes import Route, Routes
from app.shadows import Shadows


@dataclass(frozen=True)
class Selection:
    """Several models for one batch; in a default run (every model), the unloadable ones are named, not fatal."""

    models: list[LoadedModel]
    skipped: dict[str, str]


class DataPlane:
    """shared_folder: where several worker processes share their drift counts; None when one serves alone."""

    def __init__(self, settings: Settings, observer: Observer | None = None, shared_folder: Path | None = None) -> None:
        self.settings = settings
        self.observer = observer or Observer()
        self.registry = Registry(settings.models_dir, settings.strict_sklearn_version, self.observer)
        self.routes = Routes(settings.models_dir, self.registry.available, settings.routes_seed)
        self.routes.current()  # read at the start: its routes, or why it is refused, are in the first log lines
        self.monitor = Monitor(settings.drift_window, self.model_stamps, settings.drift_monitoring, shared_folder)
        self.capture = _recorder(settings, self.observer) if settings.capture else None
        record = None if self.capture is None else self.capture.record_shadow
        self.shadows = Shadows(settings.shadow_queue, self.registry.get, self.observer, record)
        self.shadows.start()

    def close(self) -> None:
        """Lets the shadows predict what is queued, then writes what is waiting to be captured (a graceful stop)."""
        self.shadows.stop()
        if self.capture is not None:
            self.capture.close()

    @property
    def folder(self) -> Path:
        """The models folder served."""
        return self.registry.folder

    def available(self) -> list[str]:
        """The model files in the folder now (blocking: one directory scan)."""
        return self.registry.available()

    def cached(self, name: str | None) -> LoadedModel | None:
        """The model when it is loaded and current, else None; cheap enough for an event loop."""
        return self.registry.cached(self._model_name(name))

    def load(self, name: str | None) -> LoadedModel:
        """The model, loading it when needed (blocking); no name means DEFAULT_MODEL."""
        return self.registry.get(self._model_name(name))

    def cached_file(self, name: str | None) -> LoadedModel | None:
        """The model file of that name when it is loaded and current, else None (not loaded yet, or no such file:
        a route's name, say). No routes are looked up: a model file's name is never a route's, so a request that
        names a loaded model pays one stat, as before routes existed."""
        try:
            return self.registry.cached(self._named(name))
        except ServingError:
            return None  # the full path (cached, then load) says what is wrong

    def known_route(self, name: str | None) -> Route | None:
        """The route of that name among those this worker has served, without looking at routes.json."""
        return self.routes.known(self._named(name))

    def route(self, name: str | None) -> Route | None:
        """The route of that name, or None for a model's; cheap: at most one stat of routes.json a millisecond
        (app/routes.py, CHECK_SECONDS). No name: DEFAULT_MODEL."""
        return self.routes.get(self._named(name))

    def choose(self, route: Route, sticky_value: str | None = None) -> str:
        """The route's variant for one request (a model name): by the sticky header's value when given, else random."""
        return self.routes.choose(route, sticky_value)

    def route_list(self) -> list[Route]:
        """The routes served now, in the file's order."""
        return list(self.routes.current().values())

    def route_performance(self, route: Route) -> dict[tuple[str, bool], Performance | None] | None:
        """The live figures of the route's variants on their own answers, (name, False), and of its shadows on their
        answers as shadows, (name, True), for each file's current version; an entry None when nothing of it is
        captured yet or its file does not load. None with capture off. Blocking; StoreUnavailable when unreadable."""
        if self.capture is None:
            return None
        named = [(name, False) for name in route.spec.variants] + [(name, True) for name in route.spec.shadows]
        answers = []
        for name, shadow in named:
            with contextlib.suppress(ServingError):
                answers.append((self.registry.get(name), shadow))
        found = self.capture.route_performance(answers)
        return {key: found.get(key) for key in named}

    def routes_problem(self) -> str | None:
        """Why the routes file in the folder now is refused (the last good routes are served), or None."""
        self.routes.current()
        return self.routes.problem

    def unload(self, name: str) -> None:
        self.registry.unload(name)

    def loaded(self) -> list[LoadedModel]:
        """The models this process holds now; cheap: no folder scan, nothing loaded."""
        return self.registry.loaded()

    def check_size(self, records: int) -> None:
        if records > self.settings.max_records:
            raise TooManyRecords.of(records, self.settings.max_records)

    def predict(
        self, model: LoadedModel, batch: Batch, client_id: str | None = None, route: Route | None = None
    ) -> Prediction:
        """client_id: the request's own ID in its dialect (V2's "id"), captured beside the request's X-Request-ID;
        route: the route that chose the model, whose shadows then predict the same records after the answer."""
        self.check_size(len(batch))
        started = time.perf_counter()
        try:
            prediction = model.predictor.predict(batch)
        except Exception as error:
            self.observer.predict_failed(model.stem)
            raise ModelPredictFailed(
                f"Model {model.name} failed to predict: {type(error).__name__}: {error}"
            ) from error
        self.observer.predicted(model.stem, len(batch), time.perf_counter() - started)
        if self.monitor.enabled:
            self.monitor.record(model, batch, prediction)
        shadowed = route is not None and bool(route.spec.shadows)
        # One ID for the answer's capture and its shadows' answers, so that a label joins them all.
        request_id = request_id_or_new() if self.capture is not None or shadowed else ""
        if self.capture is not None:
            self.capture.record(model, batch, prediction, request_id, client_id)
        if route is not None:
            self.observer.route_answered(route.name, model.stem, len(batch))
            if shadowed:
                self.shadows.submit(
                    route.name, route.spec.shadows, model.stem, batch, prediction, request_id, client_id
                )
        return prediction

    def drift(self, model: LoadedModel) -> DriftReport:
        """The model's drift figures now (blocking)."""
        return self.monitor.report(model)

    def drift_reports(self) -> list[DriftReport]:
        """The drift figures of every model file with counts (blocking: a folder scan)."""
        return self.monitor.reports()

    def model_stamps(self) -> dict[str, Stamp]:
        """Every model file in the folder now, with its stamp (blocking: a folder scan and a stat per file)."""
        stamps = {}
        for name in self.available():
            with contextlib.suppress(ServingError):
                stamps[name] = self.registry.stamp(name)
        return stamps

    def select_cached(self, names: list[str] | None) -> Selection | None:
        """The selection when every model in it is loaded already, else None (then call select on a thread).

        Every name is checked (400, 404) before anything is loaded or predicted.
        """
        requested = names is not None
        models = [self._cached_or_missing(file_name, requested) for file_name in self._file_names(names)]
        loaded = [model for model in models if model is not None]
        return Selection(loaded, {}) if len(loaded) == len(models) else None

    def select(self, names: list[str] | None) -> Selection:
        """The named models, all of which must load; or, without names, every model that loads."""
        requested = names is not None
        file_names = self._file_names(names)
        for file_name in file_names:
            self._cached_or_missing(file_name, requested)
        models: list[LoadedModel] = []
        skipped: dict[str, str] = {}
        for file_name in file_names:
            try:
                models.append(self.registry.get(file_name))
            except ServingError as error:
                if requested:
                    raise
                skipped[file_name] = error.detail
        return Selection(models, skipped)

    def ready(self) -> bool:
        """The folder is readable and at least one model in it loads (blocking)."""
        try:
            names = self.available()
        except ServingError:
            return False
        for name in names:
            try:
                self.registry.get(name)
            except ServingError:
                continue
            return True
        return False

    def _model_name(self, name: str | None) -> str:
        """A model's name; a route's is refused with its variants named, where a model file is asked for."""
        name = self._named(name)
        route = self.routes.get(name)
        if route is not None:
            raise ModelNotFound(
                f"{route.name!r} is a route, not a model file: name one of its variants here "
                f"({', '.join(route.spec.variants)})."
            )
        return name

    def _named(self, name: str | None) -> str:
        """The name a request gave, or DEFAULT_MODEL when it gave none."""
        return self.settings.default_model if name is None else name

    def _file_names(self, names: list[str] | None) -> list[str]:
        """The named models' files, each once; without names, every file in the folder."""
        return list(dict.fromkeys(map(self.registry.file_name, names or self.available())))

    def _cached_or_missing(self, file_name: str, requested: bool) -> LoadedModel | None:
        try:
            return self.registry.cached(file_name)
        except (ModelLoadFailed, ModelNotFound):
            if requested:
                raise
            return None


def _recorder(settings: Settings, observer: Observer) -> Recorder:
    recorder = Recorder(
        settings.capture_store_url,
        settings.capture_queue,
        settings.capture_retention_days,
        settings.capture_max_rows,
        settings.feedback_window,
        observer,
        settings.log_format,
    )
    recorder.start()
    return recorder
