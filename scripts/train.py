# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: -all
#     notebook_metadata_filter: kernelspec,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Train penguin species classifiers
#
# This notebook is also a plain script, `scripts/train.py` (jupytext pairs them).
# It trains three classifiers on the Palmer penguins and writes each one to
# `models/<name>.pkl`, where the inference API serves it on the next request.
#
# Steps: load the data, split it, search hyper-parameters for each model,
# evaluate on the held-out rows, save.

# %%
import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import joblib
import sklearn
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report
from sklearn.model_selection import GridSearchCV, ParameterGrid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
from sklearn.svm import SVC

# The paired notebook runs from notebooks/: make the shared helpers in scripts/ importable.
sys.path.insert(0, str(Path.cwd().resolve().parent / "scripts"))
from penguins import (
    CATEGORICAL,
    FEATURES,
    MODEL_NAMES,
    NUMERIC,
    SEED,
    dataset_path,
    file_sha256,
    load_penguins,
    reference_profile,
    resolve_dir,
    split,
)

# %% [markdown]
# Settings come from command-line flags, else the `MODELS_DIR`, `DATA_DIR` and
# `TRAIN_QUICK` environment variables, else `models/` and `data/` under the
# project root and the full search. In a notebook the kernel's own arguments are
# ignored, so only the environment can change them.

# %%
parser = argparse.ArgumentParser(description="Train the penguin species classifiers.")
parser.add_argument("--models-dir", help="where to write <name>.pkl (env MODELS_DIR, default models)")
parser.add_argument("--data-dir", help="folder holding penguins.csv (env DATA_DIR, default data)")
parser.add_argument("--only", action="append", choices=MODEL_NAMES, metavar="NAME", help="train only NAME (repeatable)")
parser.add_argument("--seed", type=int, default=SEED, help=f"split and model seed (default {SEED})")
parser.add_argument(
    "--quick", action="store_true", help="fit default parameters instead of the grid (env TRAIN_QUICK=1; smoke tests)"
)
args, _kernel_args = parser.parse_known_args()
QUICK = args.quick or os.environ.get("TRAIN_QUICK", "").strip() not in ("", "0")

MODELS_DIR = resolve_dir(args.models_dir, "MODELS_DIR", "models")
DATA_DIR = resolve_dir(args.data_dir, "DATA_DIR", "data")
print(f"data: {dataset_path(DATA_DIR)}\nmodels: {MODELS_DIR}")

# %% [markdown]
# ## Load
#
# `seaborn.load_dataset` reads `penguins.csv` from the data folder (it only
# downloads when the file is missing) and title-cases `sex`. Rows with any
# missing value are dropped: 333 of 344 remain.

# %%
penguins = load_penguins(DATA_DIR)
print(penguins["species"].value_counts().to_string())

# %% [markdown]
# ## Split
#
# The species names become integers with a `LabelEncoder`, saved with each
# model so the API can turn predictions back into names. The split is
# stratified, so the rarer Chinstrap penguins appear in both parts.

# %%
X_train, X_test, y_train_names, y_test_names = split(penguins, seed=args.seed)
label_encoder = LabelEncoder().fit(penguins["species"])
y_train = label_encoder.transform(y_train_names)
y_test = label_encoder.transform(y_test_names)
print(f"train: {len(X_train)} rows, test: {len(X_test)} rows, classes: {list(label_encoder.classes_)}")


# %% [markdown]
# ## Preprocessing lives inside the model
#
# Island and sex are one-hot encoded and, for the estimators that care about
# scale, the measurements are standardised. Both steps are part of the saved
# pipeline, so one record sent to the API is encoded exactly as in training;
# an island or sex never seen in training encodes as all zeros.


# %%
def make_pipeline(classifier: ClassifierMixin, scale: bool) -> Pipeline:
    preprocess = ColumnTransformer(
        [
            ("categorical", OneHotEncoder(handle_unknown="ignore", sparse_output=False), CATEGORICAL),
            ("numeric", StandardScaler() if scale else "passthrough", NUMERIC),
        ]
    )
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)])


# %% [markdown]
# ## The candidates
#
# Three estimators, each with a small grid. The forest's grid stops at 100
# trees: on data this separable more trees score no better, and every tree
# costs time on each prediction. The SVC keeps the plain `predict` (no
# `probability=True`), so the API serves it without probabilities.

# %%
CANDIDATES: dict[str, tuple[Pipeline, dict[str, list[Any]]]] = {
    "logistic_regression": (
        make_pipeline(LogisticRegression(max_iter=1000), scale=True),
        {"classifier__C": [0.01, 0.1, 1.0, 10.0, 100.0]},
    ),
    "random_forest": (
        make_pipeline(RandomForestClassifier(random_state=args.seed), scale=False),
        {"classifier__n_estimators": [25, 50, 100], "classifier__max_depth": [None, 8]},
    ),
    "svc": (
        make_pipeline(SVC(random_state=args.seed), scale=True),
        {"classifier__C": [0.1, 1.0, 10.0], "classifier__kernel": ["linear", "rbf"]},
    ),
}
selected = args.only or MODEL_NAMES


# %% [markdown]
# ## Search
#
# `GridSearchCV` scores every candidate with 5-fold cross-validation on the
# training rows and refits the best one on all of them.


# %%
def search(name: str, pipeline: Pipeline, grid: dict[str, list[Any]]) -> tuple[GridSearchCV, float]:
    grid = {} if QUICK else grid  # one candidate: the estimator's defaults
    size = len(ParameterGrid(grid))
    print(f"{name}: searching {size} candidates x 5 folds", flush=True)
    started = time.perf_counter()
    searched = GridSearchCV(pipeline, grid, cv=5).fit(X_train, y_train)
    return searched, time.perf_counter() - started


def short_params(params: dict[str, Any]) -> dict[str, Any]:
    return {key.removeprefix("classifier__"): value for key, value in params.items()}


searches: dict[str, GridSearchCV] = {}
for name in selected:
    searched, seconds = search(name, *CANDIDATES[name])
    searches[name] = searched
    accuracy = accuracy_score(y_test, searched.predict(X_test))
    print(
        f"{name}: best {short_params(searched.best_params_)} "
        f"cv={searched.best_score_:.4f} test={accuracy:.4f} in {seconds:.1f} s",
        flush=True,
    )

# %% [markdown]
# ## Evaluate
#
# Precision and recall per species on the 20 % of rows no model has seen.

# %%
for name, searched in searches.items():
    report = classification_report(y_test, searched.predict(X_test), target_names=label_encoder.classes_, digits=3)
    print(f"{name}\n{report}")

# %% [markdown]
# ## Reference profile
#
# Each model file also describes the rows it was trained on, so the API can
# tell when the records it is sent stop looking like them (its `/monitor`
# page, and the drift figures in `/metrics`). For each measurement: bins
# whose edges are the nine inner deciles of the training values, open at
# both ends, with the share of training rows in each, and the minimum and
# maximum; for island and sex, the share of each category; and the share of
# each species the model predicts on these rows. Plain numbers and strings,
# like the rest of the metadata.

# %%
classes = [str(label) for label in label_encoder.classes_]
profiles = {
    name: reference_profile(X_train, label_encoder.inverse_transform(searched.predict(X_train)), classes)
    for name, searched in searches.items()
}
for name, profile in profiles.items():
    print(
        f"{name} predicts on the training rows:",
        {label: round(share, 3) for label, share in profile["predicted_classes"].items()},
    )
print("bins per measurement:", {feature: len(entry["shares"]) for feature, entry in profile["numeric"].items()})

# %% [markdown]
# ## Save
#
# Each model is one `joblib` file holding a plain dict, so serving needs no
# code from this notebook: the fitted pipeline (taking the six raw columns),
# the label encoder, and metadata describing how it was made. The file is
# written next to its final name and renamed over it, so a server reading the
# folder never sees half a file.


# %%
def bundle(name: str, searched: GridSearchCV) -> dict[str, Any]:
    metadata = {
        "name": name,
        "estimator": type(searched.best_estimator_[-1]).__name__,
        "params": short_params(searched.best_params_),
        "cv_score": float(searched.best_score_),
        "test_accuracy": float(accuracy_score(y_test, searched.predict(X_test))),
        "features": FEATURES,
        "classes": classes,
        "sklearn_version": sklearn.__version__,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "data_sha256": file_sha256(dataset_path(DATA_DIR)),
        "seed": args.seed,
        "reference": profiles[name],
    }
    return {"model": searched.best_estimator_, "label_encoder": label_encoder, "metadata": metadata}


def save_atomically(content: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # A dot-name ending in .tmp: never matched by the server's *.pkl listing.
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp", delete=False) as file:
        try:
            joblib.dump(content, file)
            file.flush()
            os.fsync(file.fileno())
            os.chmod(file.name, 0o644)  # mkstemp's 0600 would hide the model from other users
            os.replace(file.name, path)
        except BaseException:
            os.unlink(file.name)
            raise


for name, searched in searches.items():
    path = MODELS_DIR / f"{name}.pkl"
    save_atomically(bundle(name, searched), path)
    print(f"saved {path}")
