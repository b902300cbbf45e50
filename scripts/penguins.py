"""What train.py and evaluate.py share: where things are, the data, the split, and what a model file holds.

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
SPECIES = ["Adelie", "Chinstrap", "Gentoo"]
ISLANDS = ["Biscoe", "Dream", "Torgersen"]
SEXES = ["Female", "Male"]
# The calibrator's input (the model file's "calibrator"): the top class probability for a model that has
# probabilities, else the margin between the two highest scores of its one-vs-rest decision function.
TOP_PROBABILITY = "top_probability"
DECISION_MARGIN = "decision_margin"
# Field records with their true species, added to the training rows when the file exists (make export-labelled).
LABELLED = "labelled.csv"


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


def load_labelled(path: Path) -> pd.DataFrame:
    """Labelled field records (species and the six features, as in penguins.csv; other columns are ignored).

    Every row must be complete and valid: a file that is not stops training with one sentence naming the problem.
    """
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise SystemExit(f"{path} cannot be read as a CSV file ({type(error).__name__}: {error}).") from None
    missing = [column for column in [TARGET, *FEATURES] if column not in frame.columns]
    if missing:
        raise SystemExit(
            f"{path} lacks the column(s) {', '.join(missing)}: it needs {TARGET} and {', '.join(FEATURES)}."
        )
    frame = frame[[TARGET, *FEATURES]].copy()
    incomplete = frame.isna().any(axis=1).to_numpy()
    if incomplete.any():
        raise SystemExit(
            f"{path} has a missing value on line {_line(incomplete)}: every labelled record must be complete."
        )
    frame["sex"] = frame["sex"].astype(str).str.title()
    for column, allowed in ((TARGET, SPECIES), ("island", ISLANDS), ("sex", SEXES)):
        unknown = ~frame[column].isin(allowed).to_numpy()
        if unknown.any():
            raise SystemExit(
                f"{path} has {column} {frame[column].iloc[int(unknown.argmax())]!r} on line {_line(unknown)}; "
                f"known: {', '.join(allowed)}."
            )
    for column in NUMERIC:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        wrong = ~(np.isfinite(values) & (values > 0))
        if wrong.any():
            raise SystemExit(
                f"{path} has {column} {frame[column].iloc[int(wrong.argmax())]!r} on line {_line(wrong)}: "
                "measurements must be positive numbers."
            )
        frame[column] = values
    return frame.reset_index(drop=True)


def _line(rows: np.ndarray) -> int:
    """The file's line number of the first flagged row (line 1 is the header)."""
    return int(rows.argmax()) + 2


def top_label_score(model: Any, rows: pd.DataFrame) -> np.ndarray:
    """What the calibrator maps to a probability of being right, one per row: TOP_PROBABILITY or DECISION_MARGIN."""
    if hasattr(model, "predict_proba"):
        top: np.ndarray = model.predict_proba(rows).max(axis=1)
        return top
    decision = np.asarray(model.decision_function(rows), dtype=float)
    if decision.ndim == 1:  # two classes: one signed distance, whose size is the margin
        distance: np.ndarray = np.abs(decision)
        return distance
    decision = np.sort(decision, axis=1)
    margin: np.ndarray = decision[:, -1] - decision[:, -2]
    return margin


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
