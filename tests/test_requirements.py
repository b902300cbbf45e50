"""One source of truth for versions: a pickle written by one environment is read by another."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import pytest
from jobs import ROOT

MODEL_STACK = ["scikit-learn", "numpy", "scipy", "joblib", "pandas"]
IMAGES = ["compose/jupyter/requirements.uv.txt", "compose/api/requirements.uv.txt"]
# name, optional [extras], exact version
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[A-Za-z0-9,._-]+\])?==([^\s#]+)")


def pins(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {match[1].lower(): match[2] for line in lines if (match := PIN.match(line))}


def test_every_requirement_is_pinned_exactly() -> None:
    for path in [*IMAGES, "requirements-dev.txt"]:
        for line in (ROOT / path).read_text().splitlines():
            line = line.split("#")[0].strip()
            assert not line or line.startswith("-r ") or PIN.match(line), f"{path}: {line!r} is not pinned with =="


@pytest.mark.parametrize("package", MODEL_STACK)
def test_both_images_pin_the_same_model_stack(package: str) -> None:
    versions = {path: pins(ROOT / path).get(package) for path in IMAGES}
    assert None not in versions.values(), versions
    assert len(set(versions.values())) == 1, versions


def test_shared_packages_agree_across_images() -> None:
    jupyter, api = (pins(ROOT / path) for path in IMAGES)
    assert {name: jupyter[name] for name in jupyter.keys() & api.keys()} == {
        name: api[name] for name in jupyter.keys() & api.keys()
    }


@pytest.mark.parametrize("package", MODEL_STACK)
def test_the_local_venv_has_the_pinned_model_stack(package: str) -> None:
    assert version(package) == pins(ROOT / IMAGES[1])[package]


def test_the_venv_installs_both_images_requirements() -> None:
    includes = [
        line.split(None, 1)[1]
        for line in (ROOT / "requirements-dev.txt").read_text().splitlines()
        if line.startswith("-r ")
    ]
    assert sorted(includes) == sorted(IMAGES)
