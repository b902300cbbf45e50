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
# evaluate on the held-out rows, measure how far that figure can be trusted,
# calibrate each model's confidence, save.

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
import numpy as np
import pandas as pd
import sklearn
from scipy import stats
from sklearn.base import ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, classification_report
from sklearn.model_selection import GridSearchCV, ParameterGrid, RepeatedStratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
from sklearn.svm import SVC

# The paired notebook runs from notebooks/: make the shared helpers in scripts/ importable.
sys.path.insert(0, str(Path.cwd().resolve().parent / "scripts"))
from penguins import (
    CATEGORICAL,
    DECISION_MARGIN,
    FEATURES,
    LABELLED,
    MODEL_NAMES,
    NUMERIC,
    SEED,
    TARGET,
    TOP_PROBABILITY,
    dataset_path,
    file_sha256,
    load_labelled,
    load_penguins,
    project_root,
    reference_profile,
    resolve_dir,
    split,
    top_label_score,
)

# %% [markdown]
# Settings come from command-line flags, else the `MODELS_DIR`, `DATA_DIR`,
# `LABELLED_CSV` and `TRAIN_QUICK` environment variables, else `models/` and
# `data/` under the project root and the full search. In a notebook the kernel's own arguments are
# ignored, so only the environment can change them.

# %%
parser = argparse.ArgumentParser(description="Train the penguin species classifiers.")
parser.add_argument("--models-dir", help="where to write <name>.pkl (env MODELS_DIR, default models)")
parser.add_argument("--data-dir", help="folder holding penguins.csv (env DATA_DIR, default data)")
parser.add_argument(
    "--labelled",
    help=f"labelled records to train on too (env LABELLED_CSV; default <data dir>/{LABELLED} if any; none: off)",
)
parser.add_argument("--only", action="append", choices=MODEL_NAMES, metavar="NAME", help="train only NAME (repeatable)")
parser.add_argument("--seed", type=int, default=SEED, help=f"split and model seed (default {SEED})")
parser.add_argument(
    "--cv-repeats",
    type=int,
    help="repeats of the 5-fold cross-validation of the reference accuracy (default 10, 2 with --quick)",
)
parser.add_argument(
    "--quick", action="store_true", help="fit default parameters instead of the grid (env TRAIN_QUICK=1; smoke tests)"
)
args, _kernel_args = parser.parse_known_args()
QUICK = args.quick or os.environ.get("TRAIN_QUICK", "").strip() not in ("", "0")

MODELS_DIR = resolve_dir(args.models_dir, "MODELS_DIR", "models")
DATA_DIR = resolve_dir(args.data_dir, "DATA_DIR", "data")
LABELLED_SETTING = args.labelled or os.environ.get("LABELLED_CSV") or ""
if LABELLED_SETTING.strip().lower() == "none":
    LABELLED_PATH = None
elif LABELLED_SETTING:
    LABELLED_PATH = Path(LABELLED_SETTING).expanduser()
    LABELLED_PATH = LABELLED_PATH if LABELLED_PATH.is_absolute() else project_root() / LABELLED_PATH
    if not LABELLED_PATH.is_file():
        raise SystemExit(f"{LABELLED_PATH} does not exist: name a CSV of labelled records, or none.")
else:
    LABELLED_PATH = DATA_DIR / LABELLED if (DATA_DIR / LABELLED).is_file() else None
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
# ## Field records with their true species
#
# `make export-labelled` writes the records the API predicted whose true
# species was confirmed later to `data/labelled.csv` (the columns of
# `penguins.csv`). When that file exists they join the training rows, never
# the test rows, so the test accuracy stays comparable with earlier models.
# `--labelled PATH` (or `LABELLED_CSV`) names another file; `none` leaves
# them out. A record that is incomplete or names an unknown species, island
# or sex stops the run, with the line it is on.

# %%
labelled = load_labelled(LABELLED_PATH) if LABELLED_PATH is not None else None
if labelled is not None:
    X_train = pd.concat([X_train, labelled[FEATURES]], ignore_index=True)
    y_train = np.concatenate([y_train, label_encoder.transform(labelled[TARGET])])
    print(f"added {len(labelled)} labelled records from {LABELLED_PATH}: train: {len(X_train)} rows")


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
# ## How far can the test accuracy be trusted?
#
# The test split holds 67 rows: one mistake more or less moves the accuracy
# by 1.5 points. A steadier reference is repeated stratified
# cross-validation on the training rows: 5 folds, repeated 10 times with
# different shuffles (2 with `--quick`, or `--cv-repeats`), each fold refitting the chosen
# parameters on four fifths of the rows and scoring the fifth.
#
# The 50 fold scores are not independent (their training rows overlap), so
# the plain standard error of their mean is far too small. The 95 % interval
# is a t-interval with the variance corrected as Nadeau and Bengio (2003)
# propose: the fold scores' variance times (1/folds scored + test rows /
# training rows of a fold). Training writes the mean and interval into the
# model file; the API compares the accuracy it measures on labelled traffic
# with them, and alerts when its own interval lies below this one.
#
# The same loop keeps, for every row, the score its fold's model gave it
# and whether that model was right: what the calibrator below learns from.

# %%
FOLDS, LEVEL = 5, 0.95
REPEATS = args.cv_repeats or (2 if QUICK else 10)


def repeated_cv(pipeline: Pipeline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each fold's accuracy; each held-out row's score and whether its fold's model was right."""
    folds = RepeatedStratifiedKFold(n_splits=FOLDS, n_repeats=REPEATS, random_state=args.seed)
    accuracies, scores, right = [], [], []
    for fit_rows, held_out in folds.split(X_train, y_train):
        model = clone(pipeline).fit(X_train.iloc[fit_rows], y_train[fit_rows])
        rows = X_train.iloc[held_out]
        correct = model.predict(rows) == y_train[held_out]
        accuracies.append(correct.mean())
        scores.append(top_label_score(model, rows))
        right.append(correct)
    return np.array(accuracies), np.concatenate(scores), np.concatenate(right)


def corrected_interval(accuracies: np.ndarray) -> dict[str, Any]:
    """The mean fold accuracy and its Nadeau-Bengio corrected t-interval, clipped to [0, 1]."""
    count, mean = len(accuracies), float(accuracies.mean())
    variance = (1 / count + 1 / (FOLDS - 1)) * accuracies.var(ddof=1)
    half_width = float(stats.t.ppf((1 + LEVEL) / 2, count - 1) * np.sqrt(variance))
    return {
        "mean": mean,
        "lower": max(mean - half_width, 0.0),
        "upper": min(mean + half_width, 1.0),
        "level": LEVEL,
        "folds": FOLDS,
        "repeats": REPEATS,
        "method": "repeated stratified k-fold on the training split, Nadeau-Bengio corrected t-interval",
    }


reference_accuracy: dict[str, dict[str, Any]] = {}
held_out_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
for name, searched in searches.items():
    started = time.perf_counter()
    accuracies, scores, right = repeated_cv(searched.best_estimator_)
    reference_accuracy[name] = reference = corrected_interval(accuracies)
    held_out_scores[name] = scores, right
    test = accuracy_score(y_test, searched.predict(X_test))
    print(
        f"{name}: test {test:.3f} on {len(X_test)} rows; cross-validated {reference['mean']:.3f}, "
        f"95 % interval {reference['lower']:.3f} to {reference['upper']:.3f} "
        f"({FOLDS} folds x {REPEATS}, fold scores {accuracies.min():.3f} to {accuracies.max():.3f}) "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )

# %% [markdown]
# ## Calibrating the confidence
#
# Labels come late or never, so the API also estimates its accuracy from
# the answers alone: the mean, over the records it predicted, of the
# probability that each answer is right. A model's own top probability is
# not that probability (a forest's votes and a regression's softmax are
# over- or under-confident in their own ways), and the SVC has none. So each
# model gets a calibrator: an isotonic regression from a score the server
# already has (the top class probability, or for the SVC the margin between
# its two best classes' decision values) to the share of right answers,
# learnt on the rows the cross-validation held out, which the scoring model
# had not seen. The served answer is unchanged; the calibrator is stored as
# two plain lists, the points of a piecewise linear, non-decreasing map.
# The test rows, never used for it, check it: their mean calibrated
# confidence should be close to the test accuracy.


# %%
def fit_calibrator(model: Pipeline, scores: np.ndarray, right: np.ndarray) -> dict[str, Any]:
    isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, right.astype(float))
    return {
        "method": "isotonic",
        "score": TOP_PROBABILITY if hasattr(model, "predict_proba") else DECISION_MARGIN,
        "x": isotonic.X_thresholds_.tolist(),
        "y": isotonic.y_thresholds_.tolist(),
        "rows": len(scores),
    }


def calibrated(calibrator: dict[str, Any], scores: np.ndarray) -> np.ndarray:
    probabilities: np.ndarray = np.interp(scores, calibrator["x"], calibrator["y"])
    return probabilities


calibrators = {name: fit_calibrator(searches[name].best_estimator_, *held_out_scores[name]) for name in searches}
for name, searched in searches.items():
    confidence = calibrated(calibrators[name], top_label_score(searched.best_estimator_, X_test))
    test = accuracy_score(y_test, searched.predict(X_test))
    print(f"{name}: mean calibrated confidence on the test rows {confidence.mean():.3f}, accuracy {test:.3f}")

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
# the label encoder, the calibrator, and metadata describing how it was made. The file is
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
        "labelled": labelled_source(),
        "reference": profiles[name],
        "reference_accuracy": reference_accuracy[name],
    }
    return {
        "model": searched.best_estimator_,
        "label_encoder": label_encoder,
        "calibrator": calibrators[name],
        "metadata": metadata,
    }


def labelled_source() -> dict[str, Any] | None:
    """Which labelled records joined the training rows, if any."""
    if labelled is None or LABELLED_PATH is None:
        return None
    return {"file": LABELLED_PATH.name, "rows": len(labelled), "sha256": file_sha256(LABELLED_PATH)}


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
