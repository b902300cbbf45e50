"""The workers' supervisor under `python -m app`: uvicorn's, with each worker's health-check pipe closed on its side.

With several workers, uvicorn's supervisor pings each one over a pipe and replaces one that is dead or does not
answer within WORKER_HEALTHCHECK_SECONDS (app/config.py). It keeps both ends of each worker's pipe, so a worker
killed while the supervisor awaits its answer (the kernel's OOM killer, a SIGKILL) leaves the pipe open through
the supervisor's own copy of the worker's end: the supervisor then waits out the whole timeout, 30 s, before it
replaces the worker. HealthCheckedWorker closes that copy once the worker has its own, so the worker's death ends
the pipe and the supervisor replaces it at once.

This leans on uvicorn's multiprocess supervisor beyond its documented surface: the module's `Process` class, from
which the supervisor creates each worker, its `start` and its `child_conn`. On a uvicorn upgrade, check that those
names still mean the same (supervisors/multiprocess.py) and run tests/test_faults.py (`make test-soak`), which
kills a worker while the supervisor awaits it.
"""

from __future__ import annotations

from uvicorn.supervisors import multiprocess


class HealthCheckedWorker(multiprocess.Process):
    """uvicorn's worker process, whose end of the health-check pipe the supervisor closes once it is started."""

    def start(self) -> None:
        super().start()
        # The worker was handed its own copy of this end when it was spawned.
        self.child_conn.close()


def use_health_checked_workers() -> None:
    """Makes uvicorn's supervisor start HealthCheckedWorker processes: call it before uvicorn.run."""
    multiprocess.Process = HealthCheckedWorker  # type: ignore[misc]
