"""Watch a drift happen: `make drift-demo` sends the running API realistic traffic, then shifted traffic.

First, records resampled from data/penguins.csv, as the field would send them: every feature's population
stability index (PSI) stays low. Then the same kind of records from a client whose scales report the body mass
in pounds: body_mass_g's PSI climbs past 0.25 while the other features stay where they were. Each line printed
is the PSI of every feature after another slice of traffic, read from GET /models/{name}/drift; the API's
/monitor page shows the same figures as bars. It speaks to the API with the standard library (urllib); the records
come from the training scripts' loader (scripts/penguins.py, with pandas, seaborn and scikit-learn), so it runs
where training runs: the local venv or the training image.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from penguins import FEATURES, SEED, load_penguins, resolve_dir

GRAMS_PER_POUND = 453.59237
Record = dict[str, Any]


class Api:
    """The running API, with its token (API_TOKEN) when it needs one."""

    def __init__(self, url: str, token: str = "") -> None:
        self.url = url.rstrip("/")
        self.headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
        # Straight to the API, which is on this machine or the stack's network: never through a proxy.
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(self, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if data is None else "POST"
        request = urllib.request.Request(self.url + path, data, self.headers | (headers or {}), method=method)
        try:
            with self.opener.open(request, timeout=60) as answer:
                return json.load(answer)
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{request.method} {path} answered {error.code}: {error.read().decode()[:300]}") from None
        except urllib.error.URLError as error:
            raise SystemExit(f"no API answers at {self.url} ({error.reason}): start it with `make up`") from None

    def drift(self, model: str) -> dict[str, Any]:
        figures: dict[str, Any] = self.call(f"/models/{model}/drift")
        return figures

    def predict(self, model: str, records: list[Record]) -> None:
        self.call(f"/predict?model={model}", {"records": records})


def penguin_records(data_dir: Path) -> list[Record]:
    """The data set's rows as the API takes them: the six features, no species."""
    records: list[Record] = load_penguins(data_dir)[FEATURES].to_dict("records")
    return records


def resampled(records: Sequence[Record], count: int, rng: random.Random) -> list[Record]:
    """count records drawn at random, with replacement, from records."""
    return [dict(record) for record in rng.choices(records, k=count)]


def in_pounds(records: list[Record]) -> list[Record]:
    """The same penguins weighed by scales that report pounds."""
    return [record | {"body_mass_g": round(record["body_mass_g"] / GRAMS_PER_POUND, 2)} for record in records]


def batches(records: list[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def send(api: Api, model: str, records: list[Record], batch: int, report_every: int) -> Iterator[dict[str, Any]]:
    """Posts the records batch by batch; after every report_every records (and at the end), the drift figures."""
    sent = 0
    for chunk in batches(records, batch):
        api.predict(model, chunk)
        sent += len(chunk)
        if sent % report_every < len(chunk) or sent == len(records):
            yield api.drift(model)


def psi_line(phase: str, figures: dict[str, Any]) -> str:
    values = [figures["features"][name]["psi"] for name in FEATURES]
    shown = "".join(f"{'-' if value is None else f'{value:.3f}':>19}" for value in values)
    return f"{phase:<10}{figures['window']['records']:>8}{shown}"


def phase(
    api: Api, model: str, name: str, records: list[Record], batch: int, say: Callable[[str], None]
) -> dict[str, Any]:
    """Sends one phase's records, printing each feature's PSI as it moves; returns the last figures."""
    figures: dict[str, Any] = {}
    for figures in send(api, model, records, batch, max(len(records) // 10, batch)):
        say(psi_line(name, figures))
    return figures


def drifted(figures: dict[str, Any]) -> list[str]:
    significant = figures["thresholds"]["significant"]
    return [name for name, feature in figures["features"].items() if (feature["psi"] or 0) > significant]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the API (default http://127.0.0.1:8000)")
    parser.add_argument("--model", default="logistic_regression", help="the model to send traffic to")
    parser.add_argument("--records", type=int, help="records per phase (default: the API's DRIFT_WINDOW)")
    parser.add_argument("--batch", type=int, default=50, help="records per request (default 50)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the resampling (default {SEED})")
    parser.add_argument("--data-dir", help="folder holding penguins.csv (env DATA_DIR, default data)")
    args = parser.parse_args()
    api = Api(args.url, os.environ.get("API_TOKEN", ""))
    figures = api.drift(args.model)
    if not figures["monitored"]:
        raise SystemExit(f"{args.model} has no drift figures: {figures['reason']} (train it again: make train)")
    count = args.records or figures["window"]["size"]
    rng = random.Random(args.seed)
    data = penguin_records(resolve_dir(args.data_dir, "DATA_DIR", "data"))

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"{args.model}: PSI of each feature over its last {figures['window']['size']} records, as traffic arrives")
    say(f"{'phase':<10}{'window':>8}" + "".join(f"{name:>19}" for name in FEATURES))
    phase(api, args.model, "realistic", resampled(data, count, rng), args.batch, say)
    last = phase(api, args.model, "pounds", in_pounds(resampled(data, count, rng)), args.batch, say)
    names = ", ".join(drifted(last)) or "none"
    say(f"drifted (PSI above {last['thresholds']['significant']}): {names}. See {args.url}/monitor")


if __name__ == "__main__":
    main()
