"""Shadows under the real server: two workers, each with its own queue and thread, and figures exact over both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from app.routes import ROUTES_FILE
from tests.helpers import odd_records, wait_for
from tests.live import start_server

ROUTES = {"routes": {"exact": {"variants": {"logistic_regression": 1}, "shadows": ["random_forest"]}}}


def test_two_workers_count_every_disagreement_exactly_once(models_dir: Path, tmp_path: Path) -> None:
    (models_dir / ROUTES_FILE).write_text(json.dumps(ROUTES))
    records = odd_records(120, seed=11)
    with start_server(models_dir, tmp_path / "server.log", workers=2) as live:
        compared = httpx.post(
            f"{live.url}/predict/compare",
            json={"records": records, "models": ["logistic_regression", "random_forest"]},
            timeout=30,
        ).json()["results"]
        pairs = zip(
            compared["logistic_regression.pkl"]["predictions"],
            compared["random_forest.pkl"]["predictions"],
            strict=True,
        )
        expected = sum(1 for one, other in pairs if one != other)
        assert 0 < expected < 120
        for start in range(0, 120, 6):  # a new connection each: the kernel spreads them over the workers
            answer = httpx.post(f"{live.url}/predict/exact", json={"records": records[start : start + 6]}, timeout=30)
            assert answer.status_code == 200

        def shadowed() -> dict[str, Any] | None:
            body: dict[str, Any] = httpx.get(f"{live.url}/routes/exact", timeout=30).json()
            return body if body["shadows"][0]["records"] == 120 else None

        body = wait_for(shadowed, 60, "both workers' shadows to predict all 120 records")
        assert body["variants"] == {"logistic_regression": {"share": 1.0, "records": 120}}
        assert body["shadows"][0]["disagreements"] == expected
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(httpx.get(f"{live.url}/metrics", timeout=30).text)
            for sample in family.samples
            if sample.labels.get("route") == "exact"
        }
        assert samples["penguins_route_records_total"] == 120
        assert samples["penguins_shadow_records_total"] == 120
        assert samples["penguins_shadow_disagreements_total"] == expected
