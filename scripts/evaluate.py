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
# # Evaluate the trained classifiers
#
# This notebook is also a plain script, `scripts/evaluate.py` (jupytext pairs them).
# It loads every model in `models/`, scores each on the held-out rows that
# training set aside, and writes `models/evaluation/`: `metrics.json`, a
# confusion matrix per model and one comparison chart.

# %%
import argparse
import json
import sys
from pathlib import Path
from typing import Any

import joblib
import matplotlib

matplotlib.use("Agg")  # files only: no screen in a container or in CI
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix, f1_score

# The paired notebook runs from notebooks/: make the shared helpers in scripts/ importable.
sys.path.insert(0, str(Path.cwd().resolve().parent / "scripts"))
from penguins import SEED, load_penguins, resolve_dir, split

# %% [markdown]
# Settings: `--models-dir` / `MODELS_DIR` (default `models`) and
# `--data-dir` / `DATA_DIR` (default `data`), relative to the project root.

# %%
parser = argparse.ArgumentParser(description="Evaluate every model in the models folder.")
parser.add_argument("--models-dir", help="folder of <name>.pkl files (env MODELS_DIR, default models)")
parser.add_argument("--data-dir", help="folder holding penguins.csv (env DATA_DIR, default data)")
args, _kernel_args = parser.parse_known_args()

MODELS_DIR = resolve_dir(args.models_dir, "MODELS_DIR", "models")
DATA_DIR = resolve_dir(args.data_dir, "DATA_DIR", "data")
OUTPUT_DIR = MODELS_DIR / "evaluation"

# %% [markdown]
# ## Load the models
#
# Only the bundles written by `train.py` are evaluated: they carry the seed of
# the split they were trained on, so each is scored on rows it has not seen.

# %%
BUNDLE_KEYS = {"model", "label_encoder", "metadata"}


def load_bundles(folder: Path) -> dict[str, dict[str, Any]]:
    bundles = {}
    for path in sorted(folder.glob("*.pkl")):
        try:
            content = joblib.load(path)
        except Exception as error:  # a broken file must not stop the others' evaluation
            print(f"skipping {path.name}: cannot be loaded ({type(error).__name__}: {error})")
            continue
        if isinstance(content, dict) and content.keys() >= BUNDLE_KEYS:
            bundles[path.stem] = content
        else:
            print(f"skipping {path.name}: not a bundle written by train.py")
    return bundles


bundles = load_bundles(MODELS_DIR)
if not bundles:
    raise SystemExit(f"No trained models in {MODELS_DIR}: run make train first.")
print(f"evaluating {', '.join(bundles)}")

# %% [markdown]
# ## Score on the held-out rows
#
# The same stratified split as training (same seed), so the test rows are the
# ones each model never saw.

# %%
penguins = load_penguins(DATA_DIR)


def evaluate(bundle: dict[str, Any]) -> dict[str, Any]:
    _, X_test, _, y_test = split(penguins, seed=bundle["metadata"].get("seed", SEED))
    labels = bundle["label_encoder"].inverse_transform(bundle["model"].predict(X_test))
    classes = list(bundle["label_encoder"].classes_)
    print(f"{bundle['metadata']['name']}\n{classification_report(y_test, labels, digits=3)}")
    return {
        "accuracy": accuracy_score(y_test, labels),
        "macro_f1": f1_score(y_test, labels, average="macro"),
        "classes": classes,
        "confusion_matrix": confusion_matrix(y_test, labels, labels=classes).tolist(),
        "test_rows": len(y_test),
    }


results = {name: evaluate(bundle) for name, bundle in bundles.items()}
comparison = pd.DataFrame(results).T[["accuracy", "macro_f1"]].astype(float)
print(comparison.round(4).to_string())

# %% [markdown]
# ## Pictures
#
# A confusion matrix per model (rows: true species, columns: predicted), and
# one chart comparing accuracy and macro F1 across models.


# %%
def plot_confusion(name: str, result: dict[str, Any]) -> Figure:
    figure, axes = plt.subplots(figsize=(4.5, 4))
    matrix = pd.DataFrame(result["confusion_matrix"], index=result["classes"], columns=result["classes"])
    sns.heatmap(matrix, annot=True, fmt="d", cmap="Blues", cbar=False, ax=axes)
    axes.set(title=name, xlabel="predicted", ylabel="true")
    figure.tight_layout()
    return figure


def plot_comparison(comparison: pd.DataFrame) -> Figure:
    long = comparison.reset_index(names="model").melt(id_vars="model", var_name="metric", value_name="score")
    figure, axes = plt.subplots(figsize=(6, 4))
    sns.barplot(long, x="model", y="score", hue="metric", ax=axes)
    axes.set(ylim=(max(0.0, long["score"].min() - 0.05), 1.0), title="held-out scores")
    figure.tight_layout()
    return figure


OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
figures = {f"confusion_{name}.png": plot_confusion(name, result) for name, result in results.items()}
figures["comparison.png"] = plot_comparison(comparison)
for filename, figure in figures.items():
    figure.savefig(OUTPUT_DIR / filename, dpi=100)
    plt.close(figure)

# %% [markdown]
# ## Save the numbers
#
# `metrics.json` holds everything above, for machines.

# %%
(OUTPUT_DIR / "metrics.json").write_text(json.dumps(results, indent=2) + "\n")
print(f"wrote {OUTPUT_DIR / 'metrics.json'} and {len(figures)} charts")
