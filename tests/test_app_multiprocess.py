"""app/multiprocess.py: the folder where several workers keep their metric values and drift counts.

The values of a previous run never count again, and a folder made for the run goes with it. The folder in use by
real workers is checked in test_app_metrics.py.
"""

from __future__ import annotations

from pathlib import Path

from app.multiprocess import DRIFT_PREFIX, DRIFT_SUFFIX, MULTIPROC_DIR, shared_metrics_dir


def test_a_folder_is_made_for_the_run_named_to_the_workers_and_removed_after_it() -> None:
    environ: dict[str, str] = {}
    with shared_metrics_dir(True, environ) as folder:
        assert folder is not None and folder.is_dir() and not any(folder.iterdir())
        assert environ[MULTIPROC_DIR] == str(folder)
    assert not folder.exists()
    assert MULTIPROC_DIR not in environ


def test_one_worker_needs_no_folder() -> None:
    environ: dict[str, str] = {}
    with shared_metrics_dir(False, environ) as folder:
        assert folder is None and environ == {}


def test_a_given_folder_loses_a_previous_runs_values_and_stays(tmp_path: Path) -> None:
    (tmp_path / "counter_1234.db").write_bytes(b"stale")
    (tmp_path / f"{DRIFT_PREFIX}svc{DRIFT_SUFFIX}").write_bytes(b"stale drift counts")
    (tmp_path / "notes.txt").write_text("kept")
    environ = {MULTIPROC_DIR: str(tmp_path)}
    with shared_metrics_dir(True, environ) as folder:
        assert folder == tmp_path
        assert [path.name for path in tmp_path.iterdir()] == ["notes.txt"]
    assert tmp_path.is_dir()
