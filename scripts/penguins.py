"""What train.py and evaluate.py share: where things are, the data, the split.

Plain module (not a notebook): both scripts, and their paired notebooks, import it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.error import URLError

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
