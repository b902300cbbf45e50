"""app/routes.py: routes.json read and hot-reloaded, a broken file refused, and each request's variant by weight."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from app.errors import ModelsFolderUnavailable
from app.routes import CHECK_SECONDS, ROUTES_FILE, Route, Routes, RoutesFile, RouteSpec, sticky_point
from tests.helpers import ROOT

MODELS = ["logistic_regression", "random_forest", "svc"]
PENGUINS = {"variants": {"logistic_regression": 90, "random_forest": 10}, "shadows": ["svc"]}
DRAWS = 5000
# A count further than this many standard deviations from its expectation happens by chance about once in 150,000.
DEVIATIONS = 4.5


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name in MODELS:
        (tmp_path / f"{name}.pkl").write_bytes(b"")
    return tmp_path


def write(folder: Path, content: dict[str, Any] | str) -> None:
    """Atomically, as make route does: a new inode, so the change is seen however fast it follows the last."""
    text = content if isinstance(content, str) else json.dumps(content)
    (folder / "routes.tmp").write_text(text)
    os.replace(folder / "routes.tmp", folder / ROUTES_FILE)


def routes_of(folder: Path, seed: int | None = 0) -> Routes:
    return Routes(folder, lambda: sorted(path.name for path in folder.glob("*.pkl")), seed)


def route(variants: dict[str, float], sticky: str | None = None) -> Route:
    return Route("penguins", RouteSpec(variants=variants, sticky_header=sticky))


def test_no_file_means_no_routes(folder: Path) -> None:
    routes = routes_of(folder)
    assert routes.current() == {}
    assert routes.problem is None


def test_a_route_is_read_with_its_variants_shadows_and_header(folder: Path) -> None:
    write(folder, {"routes": {"penguins": {**PENGUINS, "sticky_header": "X-Client-ID"}}})
    served = routes_of(folder).current()["penguins"]
    assert served.spec.variants == {"logistic_regression": 90, "random_forest": 10}
    assert served.spec.shadows == ["svc"]
    assert served.sticky_header == "X-Client-ID"
    assert served.shares() == {"logistic_regression": 0.9, "random_forest": 0.1}


def test_a_changed_file_is_read_again(folder: Path) -> None:
    write(folder, {"routes": {"penguins": PENGUINS}})
    routes = routes_of(folder)
    assert list(routes.current()) == ["penguins"]
    write(folder, {"routes": {"adelie": {"variants": {"svc": 1}}}})
    assert list(routes.current()) == ["adelie"]


def test_a_request_looks_at_the_file_again_only_after_the_check_interval(folder: Path) -> None:
    write(folder, {"routes": {"penguins": PENGUINS}})
    routes = routes_of(folder)
    assert routes.get("penguins") is not None
    write(folder, {"routes": {"adelie": {"variants": {"svc": 1}}}})
    checked = time.monotonic()
    routes._checked = checked  # as if a request had just looked: the next ones serve what was read
    assert routes.get("adelie") is None and routes.get("penguins") is not None
    while time.monotonic() - checked < CHECK_SECONDS:
        time.sleep(CHECK_SECONDS / 4)
    assert routes.get("adelie") is not None and routes.get("penguins") is None


def test_a_deleted_file_serves_no_routes(folder: Path) -> None:
    write(folder, {"routes": {"penguins": PENGUINS}})
    routes = routes_of(folder)
    routes.current()
    (folder / ROUTES_FILE).unlink()
    assert routes.current() == {}
    assert routes.problem is None


def penguins(**fields: Any) -> dict[str, Any]:
    """A file whose one route, penguins, has these fields."""
    return {"routes": {"penguins": fields}}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        pytest.param('{"routes": {"penguins": ', "it is not valid JSON", id="bad-json"),
        pytest.param(penguins(variants={"svc": -1}), "greater than or equal to 0", id="weight-below-0"),
        pytest.param(penguins(variants={"svc": 0}), "at least one weight must be above 0", id="all-0"),
        pytest.param(penguins(variants={"svc": "1"}), "valid number", id="weight-a-string"),
        pytest.param(penguins(variants={}), "at least 1 item", id="no-variant"),
        pytest.param(penguins(variants={"gone": 1}), "'gone', which is not a model file", id="unknown-model"),
        pytest.param(penguins(variants={"svc": 1}, shadows=["gone"]), "'gone', which is not", id="unknown-shadow"),
        pytest.param(penguins(variants={"svc": 1}, shadows=["svc"]), "both a variant and a", id="shadow-a-variant"),
        pytest.param(penguins(variants={"svc": 1}, weights=1), "Extra inputs are not permitted", id="unknown-field"),
        pytest.param(penguins(variants={"svc": 1}, sticky_header="X Client"), "sticky_header", id="header-not-a-token"),
        pytest.param({"routes": {"svc": {"variants": {"svc": 1}}}}, "a model file (svc.pkl)", id="a-model-name"),
        pytest.param({"routes": {"../x": {"variants": {"svc": 1}}}}, "not a plain name", id="name-a-path"),
        pytest.param({"routs": {}}, "Extra inputs are not permitted", id="misspelled-top-level"),
    ],
)
def test_a_broken_file_keeps_the_last_good_routes_and_says_why_once(
    folder: Path, caplog: pytest.LogCaptureFixture, content: dict[str, Any] | str, reason: str
) -> None:
    write(folder, {"routes": {"penguins": PENGUINS}})
    routes = routes_of(folder)
    good = routes.current()
    write(folder, content)
    with caplog.at_level(logging.ERROR, "app"):
        for _ in range(3):
            assert routes.current() == good
    assert routes.problem is not None
    assert routes.problem.startswith(f"{ROUTES_FILE} refused: ")
    assert reason in routes.problem
    assert routes.problem.endswith("; the last good routes are served")
    assert [record.getMessage() for record in caplog.records] == [routes.problem]


def test_a_good_file_after_a_broken_one_is_served_and_clears_the_problem(folder: Path) -> None:
    write(folder, "not json")
    routes = routes_of(folder)
    assert routes.current() == {}
    assert routes.problem is not None and routes.problem.endswith("no routes are served")
    write(folder, {"routes": {"penguins": PENGUINS}})
    assert list(routes.current()) == ["penguins"]
    assert routes.problem is None


def test_a_variant_deleted_after_the_file_was_read_leaves_the_route_served(folder: Path) -> None:
    """The request then gets the usual 404 for the missing model (tests/test_original_routes.py)."""
    write(folder, {"routes": {"penguins": PENGUINS}})
    routes = routes_of(folder)
    routes.current()
    (folder / "random_forest.pkl").unlink()
    assert list(routes.current()) == ["penguins"]


def test_previous_routes_are_checked_for_shape_only(folder: Path) -> None:
    """A previous route may name a model deleted since: the file stays good; a rollback to it is refused then."""
    parsed = RoutesFile.parse(json.dumps({"routes": {}, "previous": {"penguins": {"variants": {"gone": 1}}}}), ["svc"])
    assert parsed.previous["penguins"].variants == {"gone": 1}


def within_binomial_bounds(count: int, draws: int, share: float) -> bool:
    spread = DEVIATIONS * math.sqrt(draws * share * (1 - share))
    return abs(count - draws * share) <= spread


@pytest.mark.parametrize(
    "weights",
    [
        pytest.param({"logistic_regression": 90, "random_forest": 10}, id="90-10"),
        pytest.param({"logistic_regression": 1, "random_forest": 1, "svc": 2}, id="1-1-2"),
        pytest.param({"logistic_regression": 0.3, "random_forest": 0, "svc": 0.7}, id="with-a-zero"),
    ],
)
def test_the_split_is_within_the_binomial_bounds(folder: Path, weights: dict[str, float]) -> None:
    routes = routes_of(folder, seed=20261206)
    served = route(weights)
    counts = Counter(routes.choose(served, None) for _ in range(DRAWS))
    for name, share in served.shares().items():
        assert within_binomial_bounds(counts[name], DRAWS, share), (name, counts, share)
    assert counts["random_forest"] > 0 or weights["random_forest"] == 0


def test_a_zero_weight_is_never_chosen(folder: Path) -> None:
    routes = routes_of(folder, seed=1)
    served = route({"logistic_regression": 1, "random_forest": 0})
    assert {routes.choose(served, None) for _ in range(DRAWS)} == {"logistic_regression"}


def test_the_same_seed_chooses_the_same_variants(folder: Path) -> None:
    served = route({"logistic_regression": 1, "random_forest": 1})
    first, second = routes_of(folder, seed=5), routes_of(folder, seed=5)
    assert [first.choose(served, None) for _ in range(200)] == [second.choose(served, None) for _ in range(200)]


def test_a_sticky_value_always_gets_the_same_variant(folder: Path) -> None:
    routes = routes_of(folder, seed=None)
    served = route({"logistic_regression": 1, "random_forest": 1, "svc": 1}, "X-Client-ID")
    for client in (f"client-{number}" for number in range(200)):
        assert len({routes.choose(served, client) for _ in range(20)}) == 1


def test_sticky_values_spread_by_the_weights(folder: Path) -> None:
    served = route({"logistic_regression": 90, "random_forest": 10}, "X-Client-ID")
    counts = Counter(routes_of(folder).choose(served, f"client-{number}") for number in range(DRAWS))
    assert within_binomial_bounds(counts["random_forest"], DRAWS, 0.1), counts


def test_a_sticky_point_is_the_same_in_another_process() -> None:
    """Never Python's hash(), which is salted per process."""
    values = [f"client-{number}" for number in range(50)]
    code = f"from app.routes import sticky_point; print([sticky_point(v) for v in {values!r}])"
    printed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert json.loads(printed.stdout) == [sticky_point(value) for value in values]


def test_a_weight_change_moves_only_the_clients_in_the_moved_share(folder: Path) -> None:
    """90/10 to 80/20: exactly the clients whose point lies in [0.8, 0.9) go from the first variant to the second."""
    routes = routes_of(folder)
    before = route({"logistic_regression": 90, "random_forest": 10}, "X-Client-ID")
    after = route({"logistic_regression": 80, "random_forest": 20}, "X-Client-ID")
    clients = [f"client-{number}" for number in range(20_000)]
    moved = {client for client in clients if routes.choose(before, client) != routes.choose(after, client)}
    assert moved == {client for client in clients if 0.8 <= sticky_point(client) < 0.9}
    assert {(routes.choose(before, client), routes.choose(after, client)) for client in moved} == {
        ("logistic_regression", "random_forest")
    }
    assert within_binomial_bounds(len(moved), len(clients), 0.1)


@pytest.mark.parametrize(
    ("point", "variant"),
    [
        pytest.param(0.0, "logistic_regression", id="start"),
        pytest.param(0.8999, "logistic_regression", id="below-the-bound"),
        pytest.param(0.9, "random_forest", id="at-the-bound"),
        pytest.param(0.9999999999, "random_forest", id="end"),
    ],
)
def test_a_point_falls_in_its_variants_interval(point: float, variant: str) -> None:
    assert route({"logistic_regression": 90, "random_forest": 10}).variant_at(point) == variant


def test_the_file_writes_what_it_reads(folder: Path) -> None:
    content = {"routes": {"penguins": PENGUINS}, "previous": {"penguins": {"variants": {"svc": 1.0}}}}
    parsed = RoutesFile.parse(json.dumps(content), MODELS)
    assert RoutesFile.parse(parsed.to_json(), MODELS) == parsed


def test_a_folder_that_cannot_be_listed_keeps_the_routes_and_is_tried_again(folder: Path) -> None:
    write(folder, {"routes": {"penguins": PENGUINS}})
    listing: list[str] | None = None

    def models() -> list[str]:
        if listing is None:
            raise ModelsFolderUnavailable("Models folder is not readable.")
        return listing

    routes = Routes(folder, models)
    assert routes.current() == {}
    assert routes.problem is None
    listing = [f"{name}.pkl" for name in MODELS]
    assert list(routes.current()) == ["penguins"]
