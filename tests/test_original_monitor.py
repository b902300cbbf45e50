"""app/original/monitor.py: GET /monitor, a page a person reads offline, and its JSON twin GET /models/{name}/drift."""

from __future__ import annotations

import re
from pathlib import Path

import joblib
import pytest
from penguins import MODEL_NAMES
from starlette.testclient import TestClient

from app.features import FEATURES
from app.original.schemas import ModelDrift
from tests.helpers import RECORD

# Whatever makes a browser fetch or run something: the page must hold none pointing off the server.
FETCHING = re.compile(r"""(?:src|href|action|srcset|url)\s*[=(]\s*["']?([^"' )>]+)""", re.IGNORECASE)


def test_the_page_shows_each_model_its_window_and_its_features(client: TestClient) -> None:
    assert client.post("/predict?model=svc", json={"records": [RECORD] * 3}).status_code == 200
    response = client.get("/monitor")

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    page = response.text
    for model in MODEL_NAMES:
        assert f'<section class="model" id="{model}">' in page
    assert "3 of 1,000 records in the window" in page and "0 of 1,000 records in the window" in page
    for feature in FEATURES:
        assert f"<h3>{feature}<span" in page
    # Three records are too few to judge; the models no one asked yet have no figure at all.
    assert page.count('class="psi too-few-records"') == len(FEATURES) + 1
    assert 'class="psi no-records"' in page


def test_the_page_loads_nothing_and_runs_nothing(client: TestClient) -> None:
    assert client.post("/predict/compare", json={"records": [RECORD]}).status_code == 200
    response = client.get("/monitor")

    page = response.text.lower()
    assert "<script" not in page and "@import" not in page and "<link" not in page
    targets = FETCHING.findall(response.text)
    assert targets, "the page links each model's JSON figures"
    for target in targets:
        assert target.startswith("/") and not target.startswith("//"), target
        assert client.get(target).status_code == 200, target
    assert response.headers["content-security-policy"].startswith("default-src 'none'; style-src 'unsafe-inline'")


def test_the_page_says_which_models_have_no_figures_and_why(client: TestClient, models_dir: Path) -> None:
    joblib.dump(joblib.load(models_dir / "svc.pkl")["model"], models_dir / "bare.pkl")
    (models_dir / "broken.pkl").write_bytes(b"not a pickle")
    page = client.get("/monitor").text

    assert re.search(r'id="bare">.*<p>No reference profile\.</p>', page)
    assert re.search(r"<h2>broken\.pkl</h2><p>Model file broken\.pkl cannot be loaded: .+</p>", page)


def test_the_json_twin_holds_the_pages_figures(client: TestClient) -> None:
    heavy = {**RECORD, "body_mass_g": 9000}
    assert client.post("/predict?model=random_forest", json={"records": [RECORD, heavy]}).status_code == 200
    response = client.get("/models/random_forest.pkl/drift")

    assert response.status_code == 200
    figures = ModelDrift.model_validate(response.json())
    assert (figures.model, figures.monitored, figures.records) == ("random_forest.pkl", True, 2)
    assert (figures.window.size, figures.window.records) == (1000, 2)
    assert set(figures.features) == set(FEATURES)
    body_mass = figures.features["body_mass_g"]
    assert (body_mass.out_of_range, body_mass.window[-1], body_mass.level) == (1, 0.5, "too few records")
    assert figures.predictions is not None and sum(figures.predictions.total.values()) == 2
    assert figures.confidence is not None and sum(figures.confidence.counts) == 2
    assert sum(figures.predictions.reference) == pytest.approx(1)


@pytest.mark.parametrize(
    ("name", "status", "detail"),
    [
        pytest.param("no_such_model", 404, "Model 'no_such_model.pkl' not found in", id="unknown"),
        pytest.param(".hidden", 400, "Model name '.hidden' is not a plain file name", id="not-a-name"),
    ],
)
def test_the_json_twin_answers_errors_in_the_original_shape(
    client: TestClient, name: str, status: int, detail: str
) -> None:
    response = client.get(f"/models/{name}/drift")
    assert response.status_code == status
    assert list(response.json()) == ["detail"] and response.json()["detail"].startswith(detail)


def test_a_model_named_drift_is_still_described(client: TestClient, models_dir: Path) -> None:
    (models_dir / "drift.pkl").write_bytes((models_dir / "svc.pkl").read_bytes())
    assert client.get("/models/drift").json()["name"] == "drift.pkl"
    assert client.get("/models/drift/drift").json()["model"] == "drift.pkl"
