"""Routes in the original dialect: /predict through a route, /models listing it, /monitor naming a refused file."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from app.capture import Performance, Reference
from app.capture.accuracy import performance, wilson
from app.capture.reads import Joined, Recent, VersionRow
from app.original.monitor_feedback import CAPTURE_OFF
from app.original.monitor_routes import Live, route_section
from app.route_metrics import route_figures
from app.routes import CHECK_SECONDS, ROUTES_FILE, Route, RouteSpec
from tests.helpers import RECORD, odd_records, wait_for

PREDICT = {"records": [RECORD]}
ROUTE = {"variants": {"logistic_regression": 1, "random_forest": 1}, "shadows": ["svc"], "sticky_header": "X-Client-ID"}


def write_routes(folder: Path, routes: dict[str, Any]) -> None:
    """The routes file replaced, as `make route` does, and seen by the next request (past CHECK_SECONDS)."""
    (folder / "routes.tmp").write_text(json.dumps({"routes": routes}))
    os.replace(folder / "routes.tmp", folder / ROUTES_FILE)
    time.sleep(CHECK_SECONDS)


@pytest.fixture
def client(models_dir: Path, make_client: Callable[..., TestClient]) -> TestClient:
    write_routes(models_dir, {"penguins": ROUTE})
    return make_client(routes_seed=3)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/predict?model=penguins", id="query"),
        pytest.param("/predict/penguins", id="path"),
    ],
)
def test_a_route_answers_from_one_of_its_variants_and_names_it(client: TestClient, path: str) -> None:
    answers = [client.post(path, json=PREDICT) for _ in range(40)]
    for response in answers:
        assert response.status_code == 200
        variant = response.headers["x-route-variant"]
        assert response.json()["model"] == f"{variant}.pkl"
        assert response.json()["predictions"] == ["Adelie"]
    assert {response.headers["x-route-variant"] for response in answers} == {"logistic_regression", "random_forest"}


def test_the_body_may_name_a_route(client: TestClient) -> None:
    response = client.post("/predict", json={**PREDICT, "model": "penguins"})
    assert response.status_code == 200
    assert response.headers["x-route-variant"] in ROUTE["variants"]


def test_a_model_asked_by_name_carries_no_route_header(client: TestClient) -> None:
    response = client.post("/predict/svc", json=PREDICT)
    assert response.status_code == 200
    assert "x-route-variant" not in response.headers


def test_the_sticky_header_keeps_a_client_on_one_variant(client: TestClient) -> None:
    for number in range(10):
        headers = {"X-Client-ID": f"client-{number}"}
        variants = {client.post("/predict/penguins", json=PREDICT, headers=headers).headers["x-route-variant"]}
        variants |= {client.post("/predict/penguins", json=PREDICT, headers=headers).headers["x-route-variant"]}
        assert len(variants) == 1


def test_a_route_as_default_model_routes_a_request_naming_none(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"penguins": {"variants": {"svc": 1}}})
    response = make_client(default_model="penguins").post("/predict", json=PREDICT)
    assert response.status_code == 200
    assert response.headers["x-route-variant"] == "svc"


def test_the_route_follows_a_rewritten_file(models_dir: Path, client: TestClient) -> None:
    write_routes(models_dir, {"penguins": {"variants": {"svc": 1, "random_forest": 0}}})
    variants = Counter(client.post("/predict/penguins", json=PREDICT).headers["x-route-variant"] for _ in range(20))
    assert variants == {"svc": 20}


def test_a_variant_whose_file_is_gone_is_a_404_naming_it(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"penguins": {"variants": {"random_forest": 1}}})
    client = make_client()
    assert client.post("/predict/penguins", json=PREDICT).status_code == 200
    (models_dir / "random_forest.pkl").unlink()
    response = client.post("/predict/penguins", json=PREDICT)
    assert response.status_code == 404
    assert "'random_forest.pkl' not found" in response.json()["detail"]


def test_a_route_is_not_a_model_file_where_one_is_asked_for(client: TestClient) -> None:
    response = client.get("/models/penguins")
    assert response.status_code == 404
    assert response.json()["detail"] == (
        "'penguins' is a route, not a model file: name one of its variants here (logistic_regression, random_forest)."
    )


def test_compare_is_unchanged_by_a_route(client: TestClient) -> None:
    response = client.post("/predict/compare", json=PREDICT)
    assert response.status_code == 200
    assert sorted(response.json()["results"]) == ["logistic_regression.pkl", "random_forest.pkl", "svc.pkl"]


def test_models_lists_the_routes_beside_the_model_files(client: TestClient) -> None:
    body = client.get("/models").json()
    assert body["modelos_disponibles"] == ["logistic_regression.pkl", "random_forest.pkl", "svc.pkl"]
    assert body["modelos_disponibles_total"] == 3
    assert body["routes"] == [{"name": "penguins", **ROUTE}]


def test_models_without_routes_answers_as_the_original_service(make_client: Callable[..., TestClient]) -> None:
    assert "routes" not in make_client().get("/models").json()


def test_a_broken_routes_file_never_fails_a_request(models_dir: Path, client: TestClient) -> None:
    assert client.post("/predict/penguins", json=PREDICT).status_code == 200
    (models_dir / ROUTES_FILE).write_text("{")
    time.sleep(CHECK_SECONDS)
    response = client.post("/predict/penguins", json=PREDICT)
    assert response.status_code == 200
    assert response.headers["x-route-variant"] in ROUTE["variants"]


def test_the_monitor_page_says_a_routes_file_is_refused(models_dir: Path, client: TestClient) -> None:
    assert "refused" not in client.get("/monitor").text
    write_routes(models_dir, {"penguins": {"variants": {"svc": -1}}})
    page = client.get("/monitor").text
    assert '<p class="problem">routes.json refused: routes.penguins.variants.svc: ' in page
    assert "; the last good routes are served.</p>" in page


def test_the_document_accepts_a_routes_name_and_names_the_header(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path in ("/predict", "/predict/{model_name}", "/v2/models/{name}/infer"):
        operation = document["paths"][path]["post"]
        assert "X-Route-Variant" in operation["responses"]["200"]["headers"]
    assert "routes" in document["components"]["schemas"]["ModelList"]["properties"]


def shadow_figures(client: TestClient, route: str, expected_records: int) -> dict[str, Any]:
    """GET /routes/{route} once every shadow has predicted `expected_records` records (the shadows run after)."""

    def done() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"/routes/{route}").json()
        shadowed = sum(shadow["records"] for shadow in body["shadows"])
        return body if shadowed + sum(body["shadow_dropped"].values()) >= expected_records else None

    return wait_for(done, 30, f"the shadows of {route} to predict {expected_records} records")


def differing(client: TestClient, records: list[dict[str, Any]], first: str, second: str) -> int:
    """Records the two models, asked directly, predict differently."""
    results = client.post("/predict/compare", json={"records": records, "models": [first, second]}).json()["results"]
    answers = zip(results[f"{first}.pkl"]["predictions"], results[f"{second}.pkl"]["predictions"], strict=True)
    return sum(1 for one, other in answers if one != other)


def test_a_shadows_disagreement_is_exact_on_records_two_models_part_on(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"exact": {"variants": {"logistic_regression": 1}, "shadows": ["random_forest"]}})
    client = make_client()
    records = odd_records(200)
    expected = differing(client, records, "logistic_regression", "random_forest")
    assert 0 < expected < 200
    for start in range(0, 200, 50):  # four requests
        assert client.post("/predict/exact", json={"records": records[start : start + 50]}).status_code == 200
    body = shadow_figures(client, "exact", 200)
    assert body["variants"] == {"logistic_regression": {"share": 1.0, "records": 200}}
    [shadow] = body["shadows"]
    assert shadow["variant"] == "logistic_regression" and shadow["shadow"] == "random_forest"
    assert (shadow["records"], shadow["disagreements"]) == (200, expected)
    assert shadow["disagreement_rate"] == pytest.approx(expected / 200)
    assert 0 < shadow["mean_top_probability_difference"] < 1
    assert body["shadow_dropped"] == {}


def test_a_full_shadow_queue_drops_and_counts_and_every_answer_is_given(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"penguins": ROUTE})
    client = make_client(shadow_queue=2)  # a request of 3 records never fits
    records = odd_records(3)
    answers = [client.post("/predict/penguins", json={"records": records}) for _ in range(10)]
    assert [response.status_code for response in answers] == [200] * 10
    assert all(len(response.json()["predictions"]) == 3 for response in answers)
    body = client.get("/routes/penguins").json()
    assert body["shadow_dropped"] == {"queue_full": 30}
    assert sum(variant["records"] for variant in body["variants"].values()) == 30
    assert all(shadow["records"] == 0 for shadow in body["shadows"])


def test_the_route_figures_list_each_variant_with_its_share(client: TestClient) -> None:
    for _ in range(6):
        assert client.post("/predict/penguins", json=PREDICT).status_code == 200
    body = shadow_figures(client, "penguins", 6)
    assert body["route"] == "penguins" and body["counted"] and body["sticky_header"] == "X-Client-ID"
    assert {name: variant["share"] for name, variant in body["variants"].items()} == {
        "logistic_regression": 0.5,
        "random_forest": 0.5,
    }
    assert sum(variant["records"] for variant in body["variants"].values()) == 6
    assert {(shadow["variant"], shadow["shadow"]) for shadow in body["shadows"]} == {
        ("logistic_regression", "svc"),
        ("random_forest", "svc"),
    }
    for shadow in body["shadows"]:  # svc gives no probabilities
        assert shadow["records"] == body["variants"][shadow["variant"]]["records"]
        assert shadow["mean_top_probability_difference"] is None


def test_an_unknown_route_has_no_figures(client: TestClient) -> None:
    response = client.get("/routes/svc")
    assert response.status_code == 404
    assert response.json() == {"detail": "No route 'svc' in routes.json."}


def test_with_metrics_off_the_route_figures_say_nothing_is_counted(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"penguins": ROUTE})
    client = make_client(metrics=False)
    assert client.post("/predict/penguins", json=PREDICT).status_code == 200
    body = client.get("/routes/penguins").json()
    assert body["counted"] is False
    assert all(variant["records"] == 0 for variant in body["variants"].values())


def test_the_route_series_are_on_metrics_with_the_routes_files_names(client: TestClient) -> None:
    for _ in range(4):
        assert client.post("/predict/penguins", json=PREDICT).status_code == 200
    shadow_figures(client, "penguins", 4)
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(client.get("/metrics").text)
        for sample in family.samples
        if "route" in sample.labels and family.name.startswith(("penguins_route", "penguins_shadow"))
    ]
    answered = sum(value for name, _, value in samples if name == "penguins_route_records_total")
    assert answered == 4
    shadowed = [labels for name, labels, _ in samples if name == "penguins_shadow_records_total"]
    assert {labels["shadow"] for labels in shadowed} == {"svc"}
    assert {labels["route"] for labels in shadowed} == {"penguins"}
    assert {labels["variant"] for labels in shadowed} <= {"logistic_regression", "random_forest"}
    names = {name for name, _, _ in samples}
    assert {"penguins_shadow_disagreements_total", "penguins_route_records_total"} <= names


def test_the_monitor_page_has_a_section_per_route(client: TestClient) -> None:
    for _ in range(4):
        assert client.post("/predict/penguins", json=PREDICT).status_code == 200
    shadow_figures(client, "penguins", 4)
    page = client.get("/monitor").text
    assert '<section class="route" id="route-penguins"><h2>Route penguins' in page
    assert '<a href="/routes/penguins">route JSON</a>' in page
    assert "<tr><td>logistic_regression</td><td>50%</td>" in page
    assert "<th>shadow</th><th>beside</th>" in page and "<td>svc</td>" in page


def test_the_route_figures_are_in_the_document(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert document["paths"]["/routes/{name}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert "shadows" in document["components"]["schemas"]["RouteFiguresBody"]["properties"]


def test_the_route_figures_need_the_token(models_dir: Path, make_client: Callable[..., TestClient]) -> None:
    write_routes(models_dir, {"penguins": ROUTE})
    token = "a-long-enough-test-token"
    client = make_client(api_token=token)
    assert client.get("/routes/penguins").status_code == 401
    assert client.get("/routes/penguins", headers={"authorization": f"Bearer {token}"}).status_code == 200


# --- the live accuracy of a route's variants and shadows --------------------------------------------------------


def figures_of(model: str, version: str, predicted: list[str], truth: list[str]) -> Performance:
    joined = [Joined(said, label, 1000.0, 1060.0) for said, label in zip(predicted, truth, strict=True)]
    row = VersionRow(model, version, ("Adelie", "Chinstrap", "Gentoo"), 1000.0, 1000.0, Reference(0.97, 0.95, 0.99))
    return performance(row, joined, Recent(len(joined), len(joined), None, 0))


def test_the_section_shows_each_variants_and_shadows_live_accuracy_beside_the_reference() -> None:
    route = Route("penguins", RouteSpec(variants={"logistic_regression": 1}, shadows=["svc", "random_forest"]))
    figures = route_figures(None, route)
    truth = ["Adelie"] * 8 + ["Gentoo"] * 2
    live = Live({
        ("logistic_regression", False): figures_of("logistic_regression", "aaa", ["Adelie"] * 10, truth),
        ("svc", True): figures_of("svc", "bbb", truth, truth),
        ("random_forest", True): None,
    })  # fmt: skip
    section = route_section(figures, "", live)
    assert "<h3>Live accuracy</h3>" in section
    low, high = wilson(8, 10)
    assert (
        f"<tr><td>logistic_regression</td><td>own</td><td>aaa</td><td>10</td><td>80.0%</td>"
        f"<td>{low:.1%} to {high:.1%}</td><td>97.0% (95.0% to 99.0%)</td></tr>"
    ) in section
    low, high = wilson(10, 10)
    assert f"<td>svc</td><td>as shadow</td><td>bbb</td><td>10</td><td>100.0%</td><td>{low:.1%} to {high:.1%}" in section
    assert '<td>random_forest</td><td>as shadow</td><td colspan="5">nothing captured yet</td>' in section


@pytest.mark.parametrize(
    ("live", "line"),
    [
        pytest.param(Live({}, CAPTURE_OFF), CAPTURE_OFF, id="capture-off"),
        pytest.param(Live({("svc", False): None}), "No labels yet", id="no-labels"),
    ],
)
def test_without_labels_the_section_says_so_in_one_line(live: Live, line: str) -> None:
    route = Route("penguins", RouteSpec(variants={"svc": 1}))
    section = route_section(route_figures(None, route), "", live)
    assert f'<h3>Live accuracy</h3><p class="note">{line}' in section
    assert "<th>live accuracy</th>" not in section


def test_with_capture_off_the_route_json_has_null_live_figures(
    models_dir: Path, make_client: Callable[..., TestClient]
) -> None:
    write_routes(models_dir, {"penguins": ROUTE})
    body = make_client(capture=False).get("/routes/penguins").json()
    assert body["live"] == {
        "unavailable": CAPTURE_OFF,
        "variants": {"logistic_regression": None, "random_forest": None},
        "shadows": {"svc": None},
    }


def test_a_routes_variant_and_shadow_are_each_scored_on_their_own_answers(
    models_dir: Path, make_client: Callable[..., TestClient], store_url: str
) -> None:
    write_routes(models_dir, {"scored": {"variants": {"logistic_regression": 1}, "shadows": ["svc"]}})
    client = make_client(capture_url=store_url)
    candidates = odd_records(300)
    compared = client.post("/predict/compare", json={"records": candidates, "models": ["logistic_regression", "svc"]})
    results = compared.json()["results"]
    answers = zip(results["logistic_regression.pkl"]["predictions"], results["svc.pkl"]["predictions"], strict=True)
    parted = [(record, own, other) for record, (own, other) in zip(candidates, answers, strict=True) if own != other]
    assert len(parted) >= 9
    parted = parted[:9]
    headers = {"X-Request-ID": "route-scored"}
    response = client.post("/predict/scored", json={"records": [record for record, _, _ in parted]}, headers=headers)
    assert response.json()["predictions"] == [own for _, own, _ in parted]
    # The first three labelled as the variant said, the other six as the shadow said: each right where the other is not.
    truth = [own for _, own, _ in parted[:3]] + [other for _, _, other in parted[3:]]
    labels = [{"request_id": "route-scored", "row": row, "label": label} for row, label in enumerate(truth)]
    assert client.post("/feedback", json=labels).status_code == 200

    def scored() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get("/routes/scored").json()
        shadow = body["live"]["shadows"]["svc"]
        return body if shadow is not None and shadow["window_labels"] == len(truth) else None

    live = wait_for(scored, 30, "the shadow's answers to be captured and joined to their labels")["live"]
    variant, shadow = live["variants"]["logistic_regression"], live["shadows"]["svc"]
    assert live["unavailable"] is None
    for figures, predicted in ((variant, [own for _, own, _ in parted]), (shadow, [other for _, _, other in parted])):
        correct = sum(1 for said, label in zip(predicted, truth, strict=True) if said == label)
        assert (figures["window_labels"], figures["accuracy"]) == (len(truth), correct / len(truth))
        assert (figures["accuracy_lower"], figures["accuracy_upper"]) == pytest.approx(wilson(correct, len(truth)))
        assert figures["reference"] is not None
        assert figures["reference"]["lower"] <= figures["reference"]["mean"] <= figures["reference"]["upper"]
    assert (variant["accuracy"], shadow["accuracy"]) == (3 / 9, 6 / 9)
    page = client.get("/monitor").text
    assert f"<td>logistic_regression</td><td>own</td><td>{variant['version']}</td><td>9</td><td>33.3%</td>" in page
    assert f"<td>svc</td><td>as shadow</td><td>{shadow['version']}</td><td>9</td><td>66.7%</td>" in page
