"""The models folder: discover, load once, cache, hot-reload, evict; and the path-safety boundary.

A pickle is code. Only a plain file name (app/rules.py) inside MODELS_DIR is ever
opened, and a symlink is followed only when its target lies inside MODELS_DIR too.
A cached model costs one stat per request; a changed (mtime, size, inode) reloads it on next use.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import threading
import time
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import joblib
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from app.calibration import NO_CALIBRATOR, Calibrator, NoCalibrator, read_calibrator
from app.encoders import probe_batch
from app.errors import (
    InvalidModelName,
    ModelLoadFailed,
    ModelNotFound,
    ModelOutsideFolder,
    ModelsFolderUnavailable,
)
from app.modelfile import NotAModel, Stamp, Unpacked, estimator_name, unpack
from app.monitoring.profile import NO_PROFILE, NoProfile, Profile, read_profile
from app.observer import Observer
from app.predictors import Predictor, build_predictor, measure
from app.reference_accuracy import ReferenceAccuracy, read_reference_accuracy
from app.rules import MODEL_NAME_MAX_LENGTH, SUFFIX, is_model_name

# Hex digits of the file's SHA-256 that name a loaded version: enough to tell two files apart.
VERSION_DIGITS = 12
logger = logging.getLogger("app")
# warnings.catch_warnings changes process-wide state: one unpickling at a time sees its own warnings.
UNPICKLE_LOCK = threading.Lock()


class VersionRefused(ValueError):
    """STRICT_SKLEARN_VERSION is on and the file was pickled by another scikit-learn."""


@dataclass(frozen=True)
class VersionMismatch:
    """The file was pickled by one scikit-learn and is served by another: predictions may differ, or fail."""

    trained_with: str
    serving_with: str


@dataclass(frozen=True)
class LoadedModel:
    name: str  # the file name, "random_forest.pkl"
    stamp: Stamp
    predictor: Predictor
    unpacked: Unpacked
    seconds_one: float  # measured at load: one record
    seconds_per_record: float  # measured at load: each further record
    version: str  # the start of the file's SHA-256: changes with every new file
    sklearn_version_mismatch: VersionMismatch | None = None
    reference: Profile | NoProfile = NO_PROFILE  # what its drift is measured against (app/monitoring/)
    calibrator: Calibrator | NoCalibrator = NO_CALIBRATOR  # its accuracy estimate (app/calibration.py)
    reference_accuracy: ReferenceAccuracy | None = None  # from training (app/reference_accuracy.py)

    @cached_property
    def stem(self) -> str:
        """The name without .pkl, as clients usually write it."""
        return self.name.removesuffix(SUFFIX)

    def estimated_seconds(self, records: int) -> float:
        return self.seconds_one + self.seconds_per_record * (records - 1)


@dataclass(frozen=True)
class BrokenModel:
    """A failed load, remembered until the file changes, so a bad file is not re-read on every request."""

    stamp: Stamp
    detail: str


class Registry:
    def __init__(self, folder: Path, strict_sklearn_version: bool = False, observer: Observer | None = None) -> None:
        self.folder = folder
        self._prefix = os.path.join(str(folder), "")  # the folder and its separator, to put a file's name after
        self.strict_sklearn_version = strict_sklearn_version
        self.observer = observer or Observer()
        self._entries: dict[str, LoadedModel | BrokenModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def available(self) -> list[str]:
        """The model files in the folder now; cached models whose file is gone are evicted."""
        try:
            with os.scandir(self.folder) as entries:
                names = sorted(entry.name for entry in entries if self._is_listed(entry))
        except OSError as error:
            raise ModelsFolderUnavailable(f"Models folder {self.folder} is not readable: {_reason(error)}.") from None
        for gone in self._entries.keys() - set(names):
            self._evict(gone)
        self.observer.model_files(len(names))
        return names

    def file_name(self, name: str) -> str:
        """A client-given name as a file name in the folder; anything that is not a plain name is refused.

        The rule applies to the name without .pkl, so a file name given back (as select does) passes again.
        """
        stem = name.removesuffix(SUFFIX)
        if not is_model_name(stem):
            raise InvalidModelName(
                f"Model name {name[:MODEL_NAME_MAX_LENGTH]!r} is not a plain file name: use letters, digits, "
                f"'.', '_' or '-', starting with a letter or digit, at most {MODEL_NAME_MAX_LENGTH} characters."
            )
        return stem + SUFFIX

    def cached(self, name: str) -> LoadedModel | None:
        """The loaded model when it is current (one stat), else None: cheap enough for the event loop."""
        file_name = self.file_name(name)
        entry = self._entries.get(file_name)
        try:
            stamp = self._stamp(file_name)
        except ModelsFolderUnavailable:
            # The folder cannot be read for now (permissions, a remount): keep serving what is loaded.
            if isinstance(entry, LoadedModel):
                return entry
            raise
        if entry is None or entry.stamp != stamp:
            return None
        if isinstance(entry, BrokenModel):
            raise ModelLoadFailed(entry.detail)
        return entry

    def get(self, name: str) -> LoadedModel:
        """The current model, loading it when needed; blocking: call from a worker thread."""
        found = self.cached(name)
        if found is not None:
            return found
        file_name = self.file_name(name)
        # Single flight: concurrent requests for a new file wait here and find it cached.
        with self._lock(file_name):
            found = self.cached(name)
            return found if found is not None else self._load(file_name)

    def loaded(self) -> list[LoadedModel]:
        """The models this process holds now, by file name (possibly older than a file replaced since)."""
        entries = list(self._entries.values())
        return sorted((entry for entry in entries if isinstance(entry, LoadedModel)), key=lambda entry: entry.name)

    def stamp(self, name: str) -> Stamp:
        """The model file's stamp now (one stat); ModelNotFound once it is gone."""
        return self._stamp(self.file_name(name))

    def unload(self, name: str) -> None:
        """Forget the loaded model; the file stays, and the next request loads it again."""
        file_name = self.file_name(name)
        self._stamp(file_name)  # 404 for a file that is not there
        self._evict(file_name)

    def _is_listed(self, entry: os.DirEntry[str]) -> bool:
        if not entry.name.endswith(SUFFIX) or not is_model_name(entry.name.removesuffix(SUFFIX)):
            return False
        if entry.is_symlink() and not self._inside(self.folder / entry.name):
            return False
        return entry.is_file()

    def _inside(self, path: Path) -> bool:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(self.folder))

    def _stamp(self, file_name: str) -> Stamp:
        path = self._prefix + file_name  # a str: a Path costs more than the lstat itself
        try:
            status = os.lstat(path)
            if stat.S_ISLNK(status.st_mode):
                self._refuse_escape(file_name)
                status = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(file_name) from None
        except OSError as error:
            # Not the file: only the folder's permissions can keep lstat from a file inside it.
            raise ModelsFolderUnavailable(f"Models folder {self.folder} is not readable: {_reason(error)}.") from None
        if not stat.S_ISREG(status.st_mode):
            raise self._not_found(file_name)
        return Stamp.of(status)

    def _refuse_escape(self, file_name: str) -> None:
        if not self._inside(self.folder / file_name):
            raise ModelOutsideFolder(
                f"Model {file_name!r} is a link to a file outside the models folder; it is never loaded."
            )

    def _not_found(self, file_name: str) -> ModelNotFound:
        self._evict(file_name)
        available = self.available()
        return ModelNotFound(
            f"Model {file_name!r} not found in {self.folder}; available: {', '.join(available) or 'none'}."
        )

    def _evict(self, file_name: str) -> None:
        if self._entries.pop(file_name, None) is not None:
            self._count_loaded()

    def _count_loaded(self) -> None:
        self.observer.models_loaded(sum(isinstance(entry, LoadedModel) for entry in list(self._entries.values())))

    def _lock(self, file_name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(file_name, threading.Lock())

    def _load(self, file_name: str) -> LoadedModel:
        self._refuse_escape(file_name)  # again, at open time: the file may have become a link since
        real = os.path.realpath(self.folder / file_name)
        started = time.perf_counter()
        try:
            # O_NOFOLLOW: the path is already resolved, so a link appearing now is refused, not followed.
            descriptor = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self._not_found(file_name) from None
        except OSError as error:
            reason = f"cannot be opened: {_reason(error)}"
            self._failed(file_name, reason, started)
            raise ModelLoadFailed(f"Model file {file_name} {reason}.") from None
        with os.fdopen(descriptor, "rb") as file:
            # The stamp of the bytes actually read: a replace during the load is seen on the next request.
            stamp = Stamp.of(os.fstat(file.fileno()))
            try:
                loaded = self._build(file_name, stamp, file.read())
            except Exception as error:
                reason = f"cannot be loaded: {_load_reason(error)}"
                self._entries[file_name] = BrokenModel(stamp, f"Model file {file_name} {reason}.")
                self._failed(file_name, reason, started)
                raise ModelLoadFailed(f"Model file {file_name} {reason}.") from error
        self._entries[file_name] = loaded
        mismatch = loaded.sklearn_version_mismatch
        if mismatch is not None:
            logger.warning(
                "%s was pickled by scikit-learn %s and is served by %s: its predictions may differ",
                file_name,
                mismatch.trained_with,
                mismatch.serving_with,
            )
        if isinstance(loaded.reference, NoProfile) and loaded.reference.malformed:
            logger.warning("%s is served without drift figures: %s", file_name, loaded.reference.reason)
        if isinstance(loaded.calibrator, NoCalibrator) and loaded.calibrator.malformed:
            logger.warning("%s is served without an accuracy estimate: %s", file_name, loaded.calibrator.reason)
        self.observer.loaded(loaded.stem, time.perf_counter() - started)
        self._count_loaded()
        estimator = estimator_name(loaded.unpacked)
        logger.info(
            "loaded %s (%s, version %s, fast path: %s)",
            file_name,
            estimator,
            loaded.version,
            loaded.predictor.fast_path,
        )
        return loaded

    def _failed(self, file_name: str, reason: str, started: float) -> None:
        self.observer.load_failed(file_name.removesuffix(SUFFIX), time.perf_counter() - started)
        # The request that triggered the load is named by the log's request context (app/logs.py).
        logger.error("model file %s %s", file_name, reason, extra={"file": file_name, "reason": reason})

    def _unpickle(self, content: bytes) -> tuple[Any, str | None]:
        """The file's object, and the scikit-learn version its estimators were pickled by when not this one."""
        if not content:
            raise NotAModel("the file is empty")
        with UNPICKLE_LOCK, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", InconsistentVersionWarning)
            try:
                loaded = joblib.load(io.BytesIO(content))
            except Exception as error:
                raise NotAModel(f"it cannot be unpickled ({type(error).__name__}: {error})") from error
        pickled_with = None
        for warning in caught:
            if isinstance(warning.message, InconsistentVersionWarning):
                pickled_with = str(warning.message.original_sklearn_version)
            else:  # not ours to swallow
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        return loaded, pickled_with

    def _version_mismatch(self, unpacked: Unpacked, pickled_with: str | None) -> VersionMismatch | None:
        named = (unpacked.metadata or {}).get("sklearn_version")
        trained_with = pickled_with or (named if isinstance(named, str) else None)
        if trained_with is None or trained_with == sklearn.__version__:
            return None
        if self.strict_sklearn_version:
            raise VersionRefused(
                f"it was pickled by scikit-learn {trained_with} and this server runs {sklearn.__version__}; "
                "STRICT_SKLEARN_VERSION=1 refuses it (retrain it, or unset STRICT_SKLEARN_VERSION)"
            )
        return VersionMismatch(trained_with, sklearn.__version__)

    def _build(self, file_name: str, stamp: Stamp, content: bytes) -> LoadedModel:
        content_object, pickled_with = self._unpickle(content)
        unpacked = unpack(content_object)
        mismatch = self._version_mismatch(unpacked, pickled_with)
        predictor = build_predictor(unpacked)
        probe = probe_batch()
        # A model that fails on sample records fails here, once, not on every request.
        seconds_one = measure(predictor, probe.head(1))
        seconds_all = measure(predictor, probe, repeats=1)
        per_record = max(seconds_all - seconds_one, 0.0) / (len(probe) - 1)
        version = hashlib.sha256(content).hexdigest()[:VERSION_DIGITS]
        reference = read_profile(unpacked.metadata, predictor.classes, predictor.has_probabilities)
        return LoadedModel(
            file_name, stamp, predictor, unpacked, seconds_one, per_record, version, mismatch, reference,
            read_calibrator(unpacked, predictor), read_reference_accuracy(unpacked.metadata, file_name),
        )  # fmt: skip


def _reason(error: OSError) -> str:
    return (error.strerror or type(error).__name__).lower()


def _load_reason(error: Exception) -> str:
    reason = str(error) if isinstance(error, (NotAModel, VersionRefused)) else f"{type(error).__name__}: {error}"
    return reason.rstrip(".")
