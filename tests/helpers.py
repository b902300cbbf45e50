"""What the tests share: the project's paths, its scripts run for real, a request example, and wait_for.

A live API server is in tests/live.py, the compose stack in tests/stack.py.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from app.features import EXAMPLE_RECORD, ISLANDS, SEXES

# The original service's request example, an Adelie: what clients send first.
RECORD: dict[str, Any] = dict(EXAMPLE_RECORD)
# Set on a test whose body failed, so its fixtures can keep evidence (the browser's screenshot).
FAILED = pytest.StashKey[bool]()
T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | None], timeout: float, awaited: str | Callable[[], str], interval: float = 0.1
) -> T:
    """Call condition every interval seconds until it returns something true, and return that.

    Past timeout seconds, fail naming what was awaited (a callable: described as it is then, a log's tail...).
    An assertion inside condition fails at once: a server that exited will not answer later.
    """
    deadline = time.monotonic() + timeout
    while not (outcome := condition()) or outcome is None:
        if time.monotonic() > deadline:
            described = awaited() if callable(awaited) else awaited
            raise AssertionError(f"waited {timeout} s in vain for {described}")
        time.sleep(interval)
    return outcome


ROOT = Path(__file__).resolve().parents[1]
# An unreachable proxy: any download attempt fails at once instead of reaching out.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}


def run_script(
    script: str, *args: str | os.PathLike[str], cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run scripts/<script> with the test's Python, warnings as errors, no network."""
    inherited = {key: value for key, value in os.environ.items() if key not in ("MODELS_DIR", "DATA_DIR")}
    # A developer's data/labelled.csv must not change what the tests train, unless a test asks for it.
    inherited["LABELLED_CSV"] = "none"
    env = {**inherited, **OFFLINE, "PYTHONWARNINGS": "error", **(env or {})}
    command = [sys.executable, str(ROOT / "scripts" / script), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def older_model_file(source: Path, target: Path, *metadata_keys: str, calibrator: Any = None) -> None:
    """A copy of a trained bundle as an older train.py wrote it: without the metadata keys named, and with
    the given calibrator entry (none by default)."""
    import joblib  # only the tests that write model files pay for it

    bundle = joblib.load(source)
    bundle["metadata"] = {key: value for key, value in bundle["metadata"].items() if key not in metadata_keys}
    bundle.pop("calibrator", None)
    if calibrator is not None:
        bundle["calibrator"] = calibrator
    joblib.dump(bundle, target)


def odd_records(count: int, seed: int = 7) -> list[dict[str, Any]]:
    """Penguins measured anywhere in the data set's ranges: records on which two models often part."""
    draw = random.Random(seed)
    return [
        {
            "island": draw.choice(ISLANDS),
            "bill_length_mm": draw.uniform(32, 60),
            "bill_depth_mm": draw.uniform(13, 22),
            "flipper_length_mm": draw.uniform(170, 232),
            "body_mass_g": draw.uniform(2700, 6300),
            "sex": draw.choice(SEXES),
        }
        for _ in range(count)
    ]
