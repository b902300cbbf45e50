"""The import contract in pyproject.toml ([tool.importlinter]): it holds, and a copy of the app that breaks it fails.
And no module of the app grows past MAX_LINES: one that does holds more than one concern.

lint-imports is run as `make lint` runs it; a broken copy is the app copied to a temporary folder with one import
added, checked against the same contract.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
# A module a newcomer reads in one sitting; past it, split it where its concerns part.
MAX_LINES = 400


def lint_imports(folder: Path) -> subprocess.CompletedProcess[str]:
    """The contract of folder's pyproject.toml, checked against folder's app/."""
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo", "--config", str(folder / "pyproject.toml")]
    return subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120, check=False)


def test_the_app_keeps_its_import_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout
    assert "0 broken" in result.stdout


def append(path: str, line: str) -> Callable[[Path], None]:
    def change(app: Path) -> None:
        with (app / path).open("a") as file:
            file.write(f"\n{line}\n")

    return change


def create(path: str) -> Callable[[Path], None]:
    def change(app: Path) -> None:
        (app / path).write_text('"""A module nobody placed."""\n')

    return change


@pytest.mark.parametrize(
    ("change", "broken"),
    [
        pytest.param(
            append("registry.py", "import app.original"),
            "app.registry -> app.original",
            id="core-imports-a-front-end",
        ),
        pytest.param(
            append("original/monitor.py", "import app.v2"),
            "app.original.monitor -> app.v2",
            id="front-end-imports-the-other",
        ),
        pytest.param(
            append("error_handlers.py", "import app.v2"),
            "app.error_handlers -> app.v2",
            id="shared-http-imports-a-front-end",
        ),
        pytest.param(
            append("config.py", "import app.registry"),
            "app.config -> app.registry",
            id="settings-import-the-core",
        ),
        pytest.param(
            append("monitoring/profile.py", "import app.monitoring.monitor"),
            "app.monitoring.profile -> app.monitoring.monitor",
            id="monitoring-arrow-up",
        ),
        pytest.param(
            append("features.py", "import starlette.responses"),
            "app.features -> starlette",
            id="core-imports-starlette",
        ),
        pytest.param(
            append("v2/codec.py", "import app.encoders"),
            "app.v2.codec -> app.encoders",
            id="front-end-reaches-below-the-dataplane",
        ),
        pytest.param(create("unplaced.py"), "- app.unplaced", id="module-without-a-layer"),
    ],
)
def test_a_copy_that_breaks_the_contract_fails(tmp_path: Path, change: Callable[[Path], None], broken: str) -> None:
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    change(tmp_path / "app")

    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout
    assert broken in result.stdout  # the arrow that breaks it, named


def too_long(app: Path) -> dict[str, int]:
    lengths = {str(path.relative_to(app)): len(path.read_text().splitlines()) for path in sorted(app.rglob("*.py"))}
    return {name: lines for name, lines in lengths.items() if lines > MAX_LINES}


def test_no_module_of_the_app_is_longer_than_max_lines() -> None:
    assert too_long(ROOT / "app") == {}


def test_a_module_one_line_too_long_is_found(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "short.py").write_text("x = 1\n" * MAX_LINES)
    assert too_long(tmp_path) == {"sub/long.py": MAX_LINES + 1}
