"""`python -m app`: the API under uvicorn, as the API image starts it.

HOST (default 127.0.0.1), PORT (default 8000), WEB_CONCURRENCY (worker processes; default
one per CPU, at most 4) and ACCESS_LOG (1: a log line per request; default off) come from
the environment. Each worker loads models on its own.
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


def access_log() -> bool:
    # Off unless asked for, as in gunicorn: a line per request costs about half the throughput.
    value = os.environ.get("ACCESS_LOG", "").strip().lower()
    if value not in ("", "0", "1", "false", "true", "no", "yes", "off", "on"):
        raise SystemExit(f"ACCESS_LOG must be 1 or 0 (true/false, yes/no, on/off); got {value!r}.")
    return value in ("1", "true", "yes", "on")


def serve(app: str = "app.main:app") -> None:
    host = os.environ.get("HOST", "127.0.0.1")
    uvicorn.run(app, host=host, port=port(), workers=workers(), access_log=access_log())


if __name__ == "__main__":
    serve()
