"""What train.py and evaluate.py share: where things are, the data, the split.

Plain module (not a notebook): both scripts, and their paired notebooks, import it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.error import URLError

import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.model_selection import train_test_split

DATASET = "penguins"
TARGET = "species"
CATEGORICAL = ["island", "sex"]
NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]
# The order of the six raw columns a saved model takes.
FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]
# The models train.py fits, by file name without .pkl.
MODEL_NAMES = ["logistic_regression", "random_forest", "svc"]
SEED = 42
TEST_SIZE = 0.2
# The reference profile's numeric bins: edges at the nine inner deciles of the training values.
DECILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def project_root(start: Path | None = None) -> Path:
    """The folder holding jupytext.toml: the repository root, or the Jupyter workspace.

    Walking up from the working directory works for `python scripts/train.py` run from
    the root and for the paired notebook, whose kernel starts in notebooks/ and has no __file__.
    """
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "jupytext.toml").is_file():
            return folder
    return here


def resolve_dir(value: str | os.PathLike[str] | None, variable: str, default: str) -> Path:
    """A folder from a flag, else the environment, else the default; relative to the project root."""
    path = Path(value or os.environ.get(variable) or default).expanduser()
    return path if path.is_absolute() else project_root() / path


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def dataset_path(data_dir: Path) -> Path:
    return data_dir / f"{DATASET}.csv"


def load_penguins(data_dir: Path) -> pd.DataFrame:
    """seaborn's penguins, read from data_dir (no network when the file is there), nulls dropped."""
    try:
        frame = sns.load_dataset(DATASET, data_home=str(data_dir))
    except (URLError, OSError) as error:
        raise SystemExit(
            f"{dataset_path(data_dir)} is missing and could not be downloaded ({error}); "
            f"copy seaborn-data's {DATASET}.csv into {data_dir}."
        ) from None
    return frame.dropna().reset_index(drop=True)


def split(frame: pd.DataFrame, seed: int = SEED) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The stratified train/test split both scripts use: X_train, X_test, y_train, y_test."""
    X_train, X_test, y_train, y_test = train_test_split(
        frame[FEATURES], frame[TARGET], test_size=TEST_SIZE, stratify=frame[TARGET], random_state=seed
    )
    return X_train, X_test, y_train, y_test


def reference_profile(rows: pd.DataFrame, predicted: Sequence[str], classes: Sequence[str]) -> dict[str, Any]:
    """What the training rows and the model's answers on them looked like, as plain data (the model file's
    metadata["reference"]): the server compares its recent requests with it to tell when they drift."""
    return {
        "rows": len(rows),
        "numeric": {name: numeric_profile(rows[name].to_numpy(dtype=float)) for name in NUMERIC},
        "categorical": {name: shares(rows[name].tolist(), sorted(rows[name].unique())) for name in CATEGORICAL},
        "predicted_classes": shares(list(predicted), classes),
    }


def numeric_profile(values: np.ndarray) -> dict[str, Any]:
    """Bins (-inf, d1], (d1, d2], ..., (dk, +inf) at the deciles, the share of the values in each, min and max.

    The deciles are values of the data (inverted_cdf), so every inner bin holds at least its upper edge. Where
    many values are equal, deciles repeat: each edge is kept once, and one equal to the maximum is dropped (the
    last bin would hold nothing), so such a feature has fewer, wider bins.
    """
    deciles = np.unique(np.quantile(values, DECILES, method="inverted_cdf"))
    edges = deciles[deciles < values.max()]
    bins = np.searchsorted(edges, values, side="left")  # bin i holds (edges[i-1], edges[i]]
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return {
        "edges": edges.tolist(),
        "shares": (counts / len(values)).tolist(),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def shares(values: Sequence[str], names: Sequence[str]) -> dict[str, float]:
    """The share of the values equal to each name (0.0 for a name that never occurs)."""
    counts = pd.Series(list(values)).value_counts()
    return {str(name): float(counts.get(name, 0) / len(values)) for name in names}
