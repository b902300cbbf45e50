"""The model-file shapes served: what an unpickled file holds, unpacked into one form; and its stamp on disk.

The project's bundle {"model", "label_encoder", "metadata"} (and "calibrator", app/calibration.py); a
bare fitted estimator or pipeline taking the six raw columns; and the original service's bundle
{"model", "label_encoder"} whose model was fitted on pd.get_dummies(drop_first=True) columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

ModelFormat = Literal["bundle", "legacy_bundle", "estimator"]


class Stamp(NamedTuple):
    """What tells a replaced file apart: os.replace changes the inode even within the same second.

    A named tuple: built and compared at every request that names a model, where a dataclass costs more.
    """

    mtime_ns: int
    size: int
    inode: int

    @classmethod
    def of(cls, status: os.stat_result) -> Stamp:
        return cls(status.st_mtime_ns, status.st_size, status.st_ino)


class NotAModel(ValueError):
    """The file unpickled fine but holds nothing the API can predict with."""


@dataclass(frozen=True)
class Unpacked:
    model: Any
    label_encoder: Any | None
    metadata: dict[str, Any] | None
    format: ModelFormat
    calibrator: Any = None  # the bundle's "calibrator" entry as it is; read by app/calibration.py


def unpack(content: Any) -> Unpacked:
    if isinstance(content, dict):
        if "model" not in content:
            raise NotAModel(f"it holds a dict with keys {sorted(map(str, content))[:6]}, not a 'model' bundle")
        metadata = content.get("metadata")
        return Unpacked(
            content["model"],
            content.get("label_encoder"),
            metadata if isinstance(metadata, dict) else None,
            "bundle" if isinstance(metadata, dict) else "legacy_bundle",
            content.get("calibrator"),
        )
    return Unpacked(content, None, None, "estimator")


def estimator_name(unpacked: Unpacked) -> str:
    """The estimator's class, from the metadata when it says, else from the final step itself."""
    named = (unpacked.metadata or {}).get("estimator")
    if isinstance(named, str) and named:
        return named
    model = unpacked.model
    final = model[-1] if hasattr(model, "steps") else model
    return type(final).__name__
