"""app/original/monitor.py: GET /monitor, a page a person reads offline, and its JSON twin GET /models/{name}/drift."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path

import joblib
import pytest
from penguins import MODEL_NAMES
from starlette.testclient import TestClient

from app.capture.accuracy import wilson
from app.features import FEATURES
from app.original.monitor_feedback import CAPTURE_OFF, STORE_DOWN
from app.original.schemas import ModelDrift
from tests.helpers import RECORD, wait_for

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
    compared = client.post("/predict/compare", json={"records": [RECORD]}, headers={"x-request-id": "compared"})
    assert compared.status_code == 200
    assert client.post("/feedback", json={"request_id": "compared", "label": "Adelie"}).json()["matched"] == 1
    response = client.get("/monitor")
    assert response.text.count('<span class="interval"') == len(MODEL_NAMES)

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


# --- the ground truth: live accuracy against the reference, confusion, coverage, delay ---------------------


def section(page: str, model: str) -> str:
    found = re.search(rf'<section class="model" id="{model}">(.*?)</section>', page, re.DOTALL)
    assert found, f"no section for {model}"
    return found.group(1)


def predict_and_label(client: TestClient, model: str, request_id: str, labels: list[str]) -> None:
    answer = client.post(f"/predict/{model}", json={"records": [RECORD] * len(labels)},
                         headers={"x-request-id": request_id})  # fmt: skip
    assert answer.status_code == 200 and set(answer.json()["predictions"]) == {"Adelie"}
    posted = [{"request_id": request_id, "row": row, "label": label} for row, label in enumerate(labels)]
    assert client.post("/feedback", json=posted).json()["matched"] == len(labels)


def place(value: float, low: float) -> float:
    return 100 * (value - low) / (1 - low)


def test_the_page_draws_the_live_accuracy_in_its_interval_against_the_reference(client: TestClient) -> None:
    predict_and_label(client, "svc", "svc-batch", ["Adelie", "Adelie", "Gentoo"])
    reference = client.get("/models/svc").json()["reference_accuracy"]
    svc = section(client.get("/monitor").text, "svc")

    lower, upper = wilson(2, 3)
    low = math.floor(lower * 10) / 10  # the scale starts at the tenth below the lowest figure shown
    start = place(lower, low)
    assert f'<span class="interval" style="left: {start:.2f}%; width: {place(upper, low) - start:.2f}%">' in svc
    assert f'<span class="point" style="left: {place(2 / 3, low):.2f}%"' in svc
    band = place(reference["lower"], low)
    assert f'<span class="band" style="left: {band:.2f}%; width: {place(reference["upper"], low) - band:.2f}%">' in svc
    assert f"66.7 % <small>{100 * lower:.1f}&ndash;{100 * upper:.1f}</small>" in svc
    assert f"{100 * reference['mean']:.1f} %" in svc
    assert '<span class="verdict few">3 labels: too few to judge</span>' in svc
    # The confusion matrix: the true Gentoo predicted Adelie is the one miss.
    assert re.search(r"<tr><th>Adelie</th><td class=\"hit\">2</td><td>0</td><td>0</td></tr>", svc)
    assert re.search(r"<tr><th>Gentoo</th><td class=\"miss\">1</td><td>0</td><td>0</td></tr>", svc)
    assert "100% of the last 3 predictions labelled; label delay p50 " in svc and ", p90 " in svc
    assert "No labels yet" not in svc


def test_a_live_accuracy_clearly_below_the_reference_is_drawn_red(client: TestClient) -> None:
    predict_and_label(client, "logistic_regression", "many", ["Adelie"] * 30 + ["Chinstrap"] * 30)
    model = section(client.get("/monitor").text, "logistic_regression")

    assert '<span class="verdict below">below the training interval</span>' in model
    assert '<div class="track below">' in model and "60 labels" in model
    assert '<td class="miss">30</td>' in model


def test_the_page_says_when_there_are_no_labels_yet(client: TestClient) -> None:
    assert client.post("/predict?model=svc", json={"records": [RECORD] * 4}).status_code == 200
    # The capture is written in the background, and the page's figures are a few seconds old at most.
    expected = "No labels yet: 0% of the last 4 predictions labelled."
    wait_for(lambda: expected in client.get("/monitor").text, 10, "the captured predictions on the page")
    page = client.get("/monitor").text

    svc = section(page, "svc")
    assert 'class="interval"' not in svc and 'class="confusion"' not in svc
    assert 'class="band"' in svc, "the reference is drawn all the same"
    assert "Nothing captured for this version yet" in section(page, "random_forest")


def test_an_older_version_of_a_file_is_listed_with_its_figures(client: TestClient, models_dir: Path) -> None:
    predict_and_label(client, "svc", "old", ["Adelie", "Adelie"])
    old = client.get("/models/svc/performance").json()["version"]
    (models_dir / "svc.pkl").write_bytes((models_dir / "random_forest.pkl").read_bytes())
    wait_for(lambda: client.get("/models/svc/performance").json()["version"] != old, 10, "the new svc.pkl")
    svc = section(client.get("/monitor").text, "svc")

    listed = rf"Other versions still in the store: {old} \(last captured [^)]+\): 100.0 % \([\d.]+&ndash;100.0\)"
    assert re.search(listed + " on 2 labels", svc)
    assert "Nothing captured for this version yet" in svc


def test_with_capture_off_the_page_says_so_and_still_shows_the_drift(make_client: Callable[..., TestClient]) -> None:
    client = make_client(capture=False)
    assert client.post("/predict?model=svc", json={"records": [RECORD]}).status_code == 200
    response = client.get("/monitor")

    assert response.status_code == 200
    svc = section(response.text, "svc")
    assert CAPTURE_OFF in svc and "/performance" not in svc
    assert 'class="band"' in svc and "1 of 1,000 records in the window" in svc


def test_a_store_that_cannot_be_read_leaves_the_drift_on_the_page(
    make_client: Callable[..., TestClient], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    client = make_client(capture_url=f"sqlite:///{blocker / 'capture.db'}")
    assert client.post("/predict?model=svc", json={"records": [RECORD]}).status_code == 200
    response = client.get("/monitor")

    assert response.status_code == 200
    for model in MODEL_NAMES:
        assert STORE_DOWN in section(response.text, model)
    assert "1 of 1,000 records in the window" in section(response.text, "svc")
    assert any("/monitor is drawn without the live accuracy" in record.getMessage() for record in caplog.records)
