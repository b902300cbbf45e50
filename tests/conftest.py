"""Fixtures shared by the suite: real models trained once per session, and API clients over copies."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Generator, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from starlette.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.helpers import FAILED, run_script
from tests.live import LiveServer, start_server
from tests.postgres import PostgresServer, postgres_server

# Generated cases judge behaviour, never the machine's speed: no per-example deadline, which a busy machine
# (the suite spreads over every CPU) would break by chance.
settings.register_profile("suite", deadline=None)
settings.load_profile("suite")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture(scope="session")
def trained_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scripts/train.py --quick, once per session: the three real bundles. Read-only: copy before changing."""
    folder = tmp_path_factory.mktemp("trained_models")
    result = run_script("train.py", "--quick", "--models-dir", folder)
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def models_dir(trained_models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the trained models, free to add to, replace and delete from."""
    folder = tmp_path / "models"
    shutil.copytree(trained_models_dir, folder)
    return folder


@pytest.fixture(scope="module")
def module_models_dir(trained_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the trained models for a module's live server; tests may add files, never change these."""
    folder = tmp_path_factory.mktemp("module") / "models"
    shutil.copytree(trained_models_dir, folder)
    return folder


@pytest.fixture(scope="session")
def live_models_dir(trained_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared live server's models: tests may add files, never change these."""
    folder = tmp_path_factory.mktemp("live") / "models"
    shutil.copytree(trained_models_dir, folder)
    return folder


@pytest.fixture(scope="session")
def live_server(live_models_dir: Path) -> Iterator[LiveServer]:
    """The API as `make serve LOCAL=1` and the image start it, with the default settings, shared by every test
    that needs no settings of its own: one server start instead of one per module."""
    log = live_models_dir.parent / "server.log"
    with start_server(live_models_dir, log) as live:
        yield live
    assert "Traceback" not in log.read_text()  # the tests sharing one server break no model


@pytest.fixture(scope="session")
def live_url(live_server: LiveServer) -> str:
    return live_server.url


@pytest.fixture
def make_client(models_dir: Path) -> Iterator[Callable[..., TestClient]]:
    """Open an API client with the lifespan running; settings default to the private models folder."""
    with ExitStack() as stack:

        def make(
            folder: Path | None = None, default_model: str = "random_forest", max_records: int = 10_000, **options: Any
        ) -> TestClient:
            """options: further Settings fields (api_token=..., max_body_bytes=...)."""
            settings = Settings(
                models_dir=folder or models_dir, default_model=default_model, max_records=max_records, **options
            )
            # Entering the client runs the lifespan, as `with TestClient(app) as client:` does.
            return stack.enter_context(TestClient(create_app(settings)))

        yield make


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (Debian's package); every test makes its own database.

    Its folder is not under pytest's, which only root may enter: the server runs as the postgres user.
    """
    root = Path(tempfile.mkdtemp(prefix="penguins-postgres-"))
    try:
        with postgres_server(root) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty capture store of each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'capture' / 'capture.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"test_{uuid.uuid4().hex[:12]}")
