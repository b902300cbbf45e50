"""`python -m app`: the API under uvicorn, as the API image starts it.

HOST (default 127.0.0.1), PORT (default 8000) and WEB_CONCURRENCY (worker processes; default
one per CPU, at most 4) come from the environment. Each worker loads models on its own.
"""

from __future__ import annotations

import os

import uvicorn


def default_workers() -> int:
    # The CPUs this process may run on: a container's --cpuset, not the host's count.
    return min(len(os.sched_getaffinity(0)), 4)


def workers() -> int:
    value = os.environ.get("WEB_CONCURRENCY", "").strip()
    if not value:
        return default_workers()
    if not value.isdigit() or int(value) < 1:
        raise SystemExit(f"WEB_CONCURRENCY must be a whole number of workers, 1 or more; got {value!r}.")
    return int(value)


def port() -> int:
    value = os.environ.get("PORT", "8000").strip()
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise SystemExit(f"PORT must be a TCP port number (1-65535); got {value!r}.")
    return int(value)


def serve(app: str = "app.main:app") -> None:
    uvicorn.run(app, host=os.environ.get("HOST", "127.0.0.1"), port=port(), workers=workers())


if __name__ == "__main__":
    serve()
