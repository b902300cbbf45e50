"""app/rules.py: the model-name rule, and the settings that rest on it alone, without the core's heavy imports."""

from __future__ import annotations

import subprocess
import sys

import pytest

from app.rules import MODEL_NAME_MAX_LENGTH, SUFFIX, is_model_name
from tests.helpers import ROOT


@pytest.mark.parametrize(
    "name", ["svc", "random_forest", "Model-2.v1", "9lives", "a" * MODEL_NAME_MAX_LENGTH, f"svc{SUFFIX}"]
)
def test_a_plain_file_name_is_a_model_name(name: str) -> None:
    assert is_model_name(name)


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param(".hidden", id="leading-dot"),
        pytest.param("../svc", id="parent"),
        pytest.param("dir/svc", id="separator"),
        pytest.param("svc name", id="space"),
        pytest.param("pingüino", id="non-ascii"),
        pytest.param("a" * (MODEL_NAME_MAX_LENGTH + 1), id="too-long"),
    ],
)
def test_anything_else_is_not(name: str) -> None:
    assert not is_model_name(name)


def test_the_settings_load_no_heavy_package() -> None:
    # In a fresh interpreter: the python -m app supervisor checks the settings before any worker imports the core.
    heavy = ("numpy", "sklearn", "joblib", "pandas", "starlette")
    code = f"import app.config, sys; print([m for m in {heavy} if m in sys.modules])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"
