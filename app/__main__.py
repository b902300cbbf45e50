"""`python -m app`: the API under uvicorn, as the API image starts it; the settings say how (app/config.py).

Each worker process loads models on its own.
"""

from __future__ import annotations

import sys

import uvicorn

from app.config import ConfigError, ServerSettings
from app.protocol import HeadLimitedProtocol


def serve(app: str = "app.main:app") -> None:
    try:
        server = ServerSettings.from_env()
    except ConfigError as error:
        sys.exit(str(error))
    uvicorn.run(app, http=HeadLimitedProtocol, **server.uvicorn_options())


if __name__ == "__main__":
    serve()
