"""Bad input, generated: whatever a client sends, never a 5xx, and every 4xx says why in `detail`.

A canary pickle lies just outside the models folder; unpickling it would create a marker file.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.helpers import RECORD

TOKEN = "fuzz-token-0123456789"
BODY_ROUTES = ["/predict", "/predict/compare", "/predict/svc"]
# A hundred cases a test: each test keeps finding nothing new well before that on these small bodies.
FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Canary:
    """Unpickling this touches `marker`: proof that the server opened a file it must not."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return (Path.touch, (self.marker,))


@pytest.fixture(scope="module")
def sandbox(trained_models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<root>/models (the real models) beside canaries that must never be unpickled."""
    root = tmp_path_factory.mktemp("fuzz")
    (root / "models").mkdir()
    for model in trained_models_dir.glob("*.pkl"):
        (root / "models" / model.name).write_bytes(model.read_bytes())
    for name in ("canary.pkl", "models.pkl", "etc.pkl"):
        (root / name).write_bytes(pickle.dumps(Canary(root / "TOUCHED")))
    (root / "models" / "escape.pkl").symlink_to(root / "canary.pkl")
    return root


@pytest.fixture(scope="module")
def client(sandbox: Path) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(models_dir=sandbox / "models"))) as client:
        yield client


@pytest.fixture(scope="module")
def guarded(sandbox: Path) -> Iterator[TestClient]:
    """Small limits and a token: the middleware answers most of what this one is sent."""
    settings = Settings(models_dir=sandbox / "models", max_records=50, max_body_bytes=2_000, api_token=SecretStr(TOKEN))
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture(autouse=True)
def canary_untouched(sandbox: Path) -> Iterator[None]:
    yield
    assert not (sandbox / "TOUCHED").exists(), "a file outside MODELS_DIR was unpickled"


def check(response: Any, records: int | None = None) -> None:
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        assert body.get("detail"), body
    elif records is not None:
        assert len(body["predictions"]) == records


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
numbers = (
    st.floats()  # NaN and ±inf included: the body then carries NaN / Infinity tokens
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([0, -0.0, -1, 1e-320, 1e308, 10**400])
)
words = st.text() | st.sampled_from(["Biscoe", "dream", "TORGERSEN", "Male", "fEmAlE", "male ", "Mâle", ""])
model_names = st.text(max_size=140) | st.sampled_from(
    ["../canary", "../canary.pkl", "/etc/passwd", "..", ".", "escape", "escape.pkl", "svc/../../canary",
     "%2e%2e%2fcanary", "svc\x00", "svc.pkl.pkl", "a" * 129, "random_forest", "svc"]
)  # fmt: skip
records = st.fixed_dictionaries(
    {},
    optional={
        "island": words | json_values,
        "sex": words | json_values,
        "bill_length_mm": numbers | json_values,
        "bill_depth_mm": numbers,
        "flipper_length_mm": numbers,
        "body_mass_g": numbers,
        "extra": json_values,
    },
)


def post(client: TestClient, path: str, payload: Any, **params: Any) -> Any:
    # allow_nan: let NaN and Infinity reach the server, as a careless client would send them.
    content = json.dumps(payload, allow_nan=True, default=str)
    return client.post(path, content=content, params=params, headers={"content-type": "application/json"})


@FUZZ
@given(payload=json_values)
def test_predict_survives_any_json(client: TestClient, payload: Any) -> None:
    check(post(client, "/predict", payload))


@FUZZ
@given(raw=st.binary(max_size=200))
def test_predict_survives_any_bytes(client: TestClient, raw: bytes) -> None:
    check(client.post("/predict", content=raw))


@FUZZ
@given(batch=st.lists(records, min_size=0, max_size=5))
def test_predict_survives_odd_records(client: TestClient, batch: list[dict[str, Any]]) -> None:
    check(post(client, "/predict", {"records": batch}), records=len(batch))


@FUZZ
@given(length=numbers, island=words, sex=words)
def test_valid_looking_records_are_answered_or_refused_with_422(
    client: TestClient, length: Any, island: str, sex: str
) -> None:
    response = post(
        client, "/predict", {"records": [{**RECORD, "bill_length_mm": length, "island": island, "sex": sex}]}
    )
    assert response.status_code in (200, 422), response.text
    if response.status_code == 200:
        assert is_finite_positive(length)


def is_finite_positive(value: Any) -> bool:
    try:
        return math.isfinite(float(value)) and float(value) > 0
    except OverflowError:  # an integer beyond any float
        return False


@FUZZ
@given(name=model_names)
def test_any_model_name_in_the_query_is_safe(client: TestClient, name: str) -> None:
    response = post(client, "/predict", {"records": [RECORD]}, model=name)
    check(response, records=1)
    assert response.status_code in (200, 400, 404), response.text


@FUZZ
@given(name=model_names)
def test_any_model_name_in_the_body_is_safe(client: TestClient, name: str) -> None:
    check(post(client, "/predict", {"records": [RECORD], "model": name}), records=1)


@FUZZ
@given(name=model_names)
def test_any_model_name_in_the_info_path_is_safe(client: TestClient, name: str) -> None:
    response = client.get(f"/models/{quote(name, safe='')}")
    assert response.status_code < 500, response.text


@FUZZ
@given(names=st.lists(model_names, max_size=4), in_body=st.booleans())
def test_any_model_names_for_compare_are_safe(client: TestClient, names: list[str], in_body: bool) -> None:
    if in_body:
        response = post(client, "/predict/compare", {"records": [RECORD], "models": names})
    else:
        response = post(client, "/predict/compare", {"records": [RECORD]}, models=names)
    check(response)
    if response.status_code == 200:
        assert all(len(result["predictions"]) == 1 for result in response.json()["results"].values())


@FUZZ
@given(payload=json_values)
def test_compare_survives_any_json(client: TestClient, payload: Any) -> None:
    check(post(client, "/predict/compare", payload))


@FUZZ
@given(path=st.sampled_from(BODY_ROUTES), payload=json_values)
def test_every_body_route_survives_any_json(client: TestClient, path: str, payload: Any) -> None:
    check(post(client, path, payload))


@FUZZ
@given(name=model_names, batch=st.lists(records, min_size=0, max_size=3))
def test_any_model_name_in_the_predict_path_is_safe(client: TestClient, name: str, batch: list[dict[str, Any]]) -> None:
    check(post(client, f"/predict/{quote(name, safe='')}", {"records": batch}))


def chunked(pieces: list[bytes]) -> Iterator[bytes]:
    yield from pieces  # a generator body: sent without a Content-Length


@FUZZ
@given(
    path=st.sampled_from(BODY_ROUTES),
    pieces=st.lists(st.binary(min_size=0, max_size=800) | st.just(b'{"records": [' + b" " * 900), max_size=6),
    declare=st.booleans(),
)
def test_bodies_near_and_over_the_limit_never_fail_the_server(
    guarded: TestClient, path: str, pieces: list[bytes], declare: bool
) -> None:
    body = b"".join(pieces)
    headers = {"authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    content: bytes | Iterator[bytes] = body if declare else chunked(pieces)
    response = guarded.post(path, content=content, headers=headers)
    check(response)
    if len(body) > 2_000:
        assert response.status_code == 413, response.text


@FUZZ
@given(
    path=st.sampled_from([*BODY_ROUTES, "/models", "/models/svc", "/", "/health", "/docs", "/nowhere"]),
    authorization=st.none()
    | st.text(max_size=60)
    | st.sampled_from(
        [f"Bearer {TOKEN}", f"bearer {TOKEN}", "Bearer", "Bearer  ", f"Bearer {TOKEN} extra", f"Basic {TOKEN}"]
    ),
)
def test_any_authorization_header_is_answered_without_a_server_error(
    guarded: TestClient, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    try:
        response = guarded.post(path, json={"records": [RECORD]}, headers=headers)
    except (UnicodeEncodeError, httpx.LocalProtocolError):
        return  # not a header value a client can send: the request never leaves
    assert response.status_code < 500, response.text
    if response.status_code == 401:
        assert response.json()["detail"] and response.headers["www-authenticate"].startswith("Bearer")
