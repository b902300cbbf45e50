"""One source of truth for versions: a pickle written by one environment is read by another.

The requirements files say what each environment needs; the lock files (`make lock`)
pin everything those pull in, with hashes, and are what the images and the venv install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.markers import Marker

from tests.helpers import ROOT

MODEL_STACK = ["scikit-learn", "numpy", "scipy", "joblib", "pandas"]
IMAGES = ["compose/jupyter/requirements.uv.txt", "compose/api/requirements.uv.txt"]
IMAGE_LOCKS = ["compose/jupyter/requirements.lock", "compose/api/requirements.lock"]
DEV_LOCK = "requirements-dev.lock"
# Each requirements file and the lock file made from it.
LOCKS = {
    "compose/installer.txt": "compose/installer.lock",
    **dict(zip(IMAGES, IMAGE_LOCKS, strict=True)),
    "requirements-dev.txt": DEV_LOCK,
}
# name, optional [extras], exact version
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[A-Za-z0-9,._-]+\])?==([^\s#]+)")
LOCK_ENTRY = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*(.+?))?\s*\\?$")
HASH = re.compile(r"^\s+--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Locked:
    name: str
    version: str
    marker: str | None
    hashes: int


def pins(path: Path) -> dict[str, str]:
    lines = (line.strip() for line in path.read_text().splitlines())
    return {match[1].lower(): match[2] for line in lines if (match := PIN.match(line))}


def all_pins(path: Path) -> dict[str, str]:
    """The file's pins and those of the files it includes with `-r`."""
    included = [line.split(None, 1)[1] for line in path.read_text().splitlines() if line.startswith("-r ")]
    return {key: value for name in included for key, value in all_pins(ROOT / name).items()} | pins(path)


def locked(path: Path) -> list[Locked]:
    entries: list[Locked] = []
    for line in path.read_text().splitlines():
        if match := LOCK_ENTRY.match(line):
            entries.append(Locked(match[1].lower(), match[2], match[3], 0))
        elif HASH.match(line):
            entries[-1] = replace(entries[-1], hashes=entries[-1].hashes + 1)
    return entries


def versions(path: Path) -> dict[str, set[str]]:
    """Every version the lock allows per package (a universal lock may fork on the Python version)."""
    found: dict[str, set[str]] = {}
    for entry in locked(path):
        found.setdefault(entry.name, set()).add(entry.version)
    return found


def test_every_requirement_is_pinned_exactly() -> None:
    for path in LOCKS:
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


@pytest.mark.parametrize(("requirements", "lock"), [pytest.param(*pair, id=pair[1]) for pair in LOCKS.items()])
def test_every_lock_satisfies_its_requirements_file(requirements: str, lock: str) -> None:
    wanted = all_pins(ROOT / requirements)
    have = versions(ROOT / lock)

    assert wanted
    assert {name: have.get(name) for name in wanted} == {name: {pinned} for name, pinned in wanted.items()}, (
        f"{lock} is out of date with {requirements}: run make lock"
    )


@pytest.mark.parametrize("lock", LOCKS.values())
def test_every_lock_entry_is_pinned_with_hashes(lock: str) -> None:
    entries = locked(ROOT / lock)
    pinned_lines = [line for line in (ROOT / lock).read_text().splitlines() if "==" in line]

    assert len(entries) == len(pinned_lines), "a lock line the parser does not understand"
    assert [entry.name for entry in entries if entry.hashes == 0] == []


@pytest.mark.parametrize("package", MODEL_STACK)
def test_both_image_locks_agree_on_the_model_stack(package: str) -> None:
    locked_versions = {path: versions(ROOT / path).get(package) for path in IMAGE_LOCKS}

    assert None not in locked_versions.values(), locked_versions
    assert all(found == {pins(ROOT / IMAGES[1])[package]} for found in locked_versions.values()), locked_versions


def test_both_image_locks_agree_on_every_shared_package() -> None:
    jupyter, api = (versions(ROOT / path) for path in IMAGE_LOCKS)

    assert {name: jupyter[name] for name in jupyter.keys() & api.keys() if jupyter[name] != api[name]} == {}


def test_the_venv_lock_holds_each_image_package_at_the_image_version() -> None:
    dev = versions(ROOT / DEV_LOCK)
    for lock in IMAGE_LOCKS:
        image = versions(ROOT / lock)
        assert {name: found for name, found in image.items() if not found <= dev.get(name, set())} == {}, lock


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def test_the_local_venv_is_installed_from_its_lock() -> None:
    here = [entry for entry in locked(ROOT / DEV_LOCK) if entry.marker is None or Marker(entry.marker).evaluate()]

    assert {entry.name: installed(entry.name) for entry in here} == {entry.name: entry.version for entry in here}


@pytest.mark.parametrize("image", ["api", "jupyter"])
def test_each_image_installs_its_lock_with_hashes(image: str) -> None:
    dockerfile = (ROOT / "compose" / image / "Dockerfile").read_text()

    assert f"COPY compose/installer.lock compose/{image}/requirements.lock /tmp/" in dockerfile
    assert "pip install --no-cache-dir --root-user-action=ignore --require-hashes -r /tmp/installer.lock" in dockerfile
    assert "--require-hashes -r /tmp/requirements.lock" in dockerfile


# The platforms the universal venv lock promises (Makefile, `make lock`), as their markers see them.
PLATFORMS = {
    "linux": {"sys_platform": "linux", "platform_system": "Linux", "os_name": "posix"},
    "macos": {"sys_platform": "darwin", "platform_system": "Darwin", "os_name": "posix"},
    "windows": {"sys_platform": "win32", "platform_system": "Windows", "os_name": "nt"},
}
# Built for POSIX systems only: no Windows release exists.
POSIX_ONLY = {"uvloop"}


@pytest.mark.parametrize("platform", PLATFORMS)
def test_the_venv_lock_installs_on_each_platform_without_posix_only_packages(platform: str) -> None:
    environment = {**PLATFORMS[platform], "platform_python_implementation": "CPython", "python_version": "3.11"}
    chosen = {
        entry.name
        for entry in locked(ROOT / DEV_LOCK)
        if entry.marker is None or Marker(entry.marker).evaluate(environment)
    }
    assert {"uvicorn", "httptools", "scikit-learn"} <= chosen
    assert (chosen >= POSIX_ONLY) is (platform != "windows")
