"""The folder where uvicorn's workers keep their metric values and drift counts, so that any worker sees them all.

prometheus_client picks its value store when it is first imported: `python -m app` prepares the folder and
names it in PROMETHEUS_MULTIPROC_DIR before uvicorn starts the workers, which inherit the variable. Only the
standard library here, so preparing it imports nothing that would pick too early.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, MutableMapping
from contextlib import contextmanager
from pathlib import Path

MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
# The drift counts' files in the folder (app/buffers.py), beside prometheus_client's *.db.
DRIFT_PREFIX, DRIFT_SUFFIX = "drift-", ".bin"


def shared_folder(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The workers' shared folder, when there is one."""
    given = environ.get(MULTIPROC_DIR, "").strip()
    return Path(given) if given else None


@contextmanager
def shared_metrics_dir(enabled: bool, environ: MutableMapping[str, str] = os.environ) -> Iterator[Path | None]:
    """A fresh folder under the temporary directory for the block, removed after it.

    A folder given in PROMETHEUS_MULTIPROC_DIR is used instead, emptied of a previous run's values and kept.
    """
    given = shared_folder(environ)
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        for stale in [*given.glob("*.db"), *given.glob(f"{DRIFT_PREFIX}*{DRIFT_SUFFIX}")]:
            stale.unlink()
        yield given
    elif not enabled:
        yield None
    else:
        folder = Path(tempfile.mkdtemp(prefix="penguins-metrics-"))
        environ[MULTIPROC_DIR] = str(folder)
        try:
            yield folder
        finally:
            del environ[MULTIPROC_DIR]
            shutil.rmtree(folder, ignore_errors=True)
