"""`python -m app`: the API under uvicorn, as the API image starts it; the settings say how (app/config.py).

Each worker process loads models on its own; with several, their metrics and drift counts meet in a shared folder.
"""

from __future__ import annotations

import sys

import uvicorn

from app.config import ConfigError, ServerSettings, Settings
from app.connection import HeadLimitedProtocol
from app.logs import log_config
from app.multiprocess import shared_metrics_dir
from app.supervisor import use_health_checked_workers


def serve(app: str = "app.main:app") -> None:
    try:
        server, settings = ServerSettings.from_env(), Settings.from_env()
    except ConfigError as error:
        sys.exit(str(error))
    # Several workers share their metrics and their drift counts through one folder.
    with shared_metrics_dir((settings.metrics or settings.drift_monitoring) and server.web_concurrency > 1):
        # The app writes the access log itself (ACCESS_LOG), with the request's ID.
        options = server.uvicorn_options() | {"access_log": False, "log_config": log_config(settings.log_format)}
        # A worker killed while the supervisor awaits its health check is replaced at once (app/supervisor.py).
        use_health_checked_workers()
        uvicorn.run(app, http=HeadLimitedProtocol, **options)


if __name__ == "__main__":
    serve()
