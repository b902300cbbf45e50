"""Run the project's scripts the way `make ... LOCAL=1` does: a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# An unreachable proxy: any download attempt fails at once instead of reaching out.
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}


def run_script(
    script: str, *args: str | os.PathLike[str], cwd: Path = ROOT, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run scripts/<script> with the test's Python, warnings as errors, no network."""
    inherited = {key: value for key, value in os.environ.items() if key not in ("MODELS_DIR", "DATA_DIR")}
    env = {**inherited, **OFFLINE, "PYTHONWARNINGS": "error", **(env or {})}
    command = [sys.executable, str(ROOT / "scripts" / script), *map(str, args)]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
