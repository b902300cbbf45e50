"""Close the loop: `make feedback-demo` sends the running API records, their true species later, and shows
the live accuracy, the estimate before labels, and the reference from training, as the traffic changes.

Three phases, each sending records drawn from the held-out split of data/penguins.csv (rows the model did
not train on) and posting each record's true species `--delay` seconds after its prediction, to POST /feedback
by the X-Request-ID the prediction was sent with:
1. realistic: the field as training saw it. Live accuracy and the estimate sit at the reference.
2. concept: a field team identifies birds with an older key that lumps Chinstrap with Adelie: the same
   measurements, another label for every Chinstrap. The model answers as before, just as sure of itself, so the
   estimate stays; the labels disagree, and the live accuracy falls below the reference: a change in what the
   label means for the same inputs (concept drift), which only labels show.
3. covariate: a team measures bill length from the gape instead of the base of the culmen, some 5 mm
   longer: the labels are right, the records move towards the model's boundaries. Live accuracy falls, and
   the estimate falls with it, before any label comes in.

Each line is read from GET /models/{name}/performance (the live figures, and `estimated_accuracy` when the
server has it) beside the reference interval of GET /models/{name}; `alert` is the expression of the
PenguinsLiveAccuracyBelowReference rule (compose/prometheus/alerts.yml) on the same figures: the live
interval's upper bound below the reference's lower bound, with at least 50 labels in the window. It speaks to
the API with the standard library (urllib), like drift_demo.py, and runs where training runs.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from drift_demo import Api as DriftApi
from drift_demo import Record
from penguins import FEATURES, SEED, load_penguins, resolve_dir, split

# The alert's floor: below this many labels in the window, the interval is too wide to judge.
ALERT_LABELS = 50
# The concept change: the team's key names every Chinstrap an Adelie.
LUMPED = {"Chinstrap": "Adelie"}
# The covariate shift: bill length measured from the gape, this much longer.
GAPE_MM = 5.0
PHASES = ("realistic", "concept", "covariate")
Labelled = tuple[Record, str]  # a record and its true species


class Api(DriftApi):
    def predict_as(self, model: str, records: list[Record], request_id: str) -> None:
        """Predicts the records under the given X-Request-ID, which their labels quote later."""
        self.call(f"/predict?model={model}", {"records": records}, {"x-request-id": request_id})

    def feedback(self, labels: list[dict[str, Any]]) -> dict[str, Any]:
        answer: dict[str, Any] = self.call("/feedback", labels)
        return answer

    def performance(self, model: str) -> dict[str, Any]:
        figures: dict[str, Any] = self.call(f"/models/{model}/performance")
        return figures

    def model(self, model: str) -> dict[str, Any]:
        info: dict[str, Any] = self.call(f"/models/{model}")
        return info


@dataclass(frozen=True)
class Reference:
    mean: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Reading:
    """The current version's live figures after a slice of one phase, and the alert's expression on them."""

    phase: str
    sent: int
    labels: int
    accuracy: float | None
    lower: float | None
    upper: float | None
    estimate: float | None
    coverage: float | None
    alert: bool


def held_out(data_dir: Any) -> list[Labelled]:
    """The test split's rows, as the API takes them, each with its species."""
    _, X_test, _, y_test = split(load_penguins(data_dir))
    records: list[Record] = X_test[FEATURES].to_dict("records")
    return list(zip(records, y_test.astype(str).tolist(), strict=True))


def batches(rows: list[Labelled], size: int) -> Iterator[list[Labelled]]:
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


def resampled(rows: Sequence[Labelled], count: int, rng: random.Random) -> list[Labelled]:
    return [(dict(record), label) for record, label in rng.choices(rows, k=count)]


def relabelled(rows: list[Labelled]) -> list[Labelled]:
    """The same records, labelled with the team's key: every Chinstrap an Adelie."""
    return [(record, LUMPED.get(label, label)) for record, label in rows]


def from_the_gape(rows: list[Labelled]) -> list[Labelled]:
    """The same birds, their bills measured from the gape: longer by GAPE_MM; the labels are right."""
    return [
        (record | {"bill_length_mm": round(record["bill_length_mm"] + GAPE_MM, 1)}, label) for record, label in rows
    ]


def phase_rows(name: str, rows: list[Labelled]) -> list[Labelled]:
    return {"realistic": rows, "concept": relabelled(rows), "covariate": from_the_gape(rows)}[name]


def reference_of(info: dict[str, Any]) -> Reference:
    entry = info.get("reference_accuracy")
    if not entry:
        raise SystemExit(f"{info['name']} has no reference accuracy: train it again (make train)")
    return Reference(entry["mean"], entry["lower"], entry["upper"])


def reading(phase: str, sent: int, figures: dict[str, Any], reference: Reference) -> Reading:
    current = next((version for version in figures["versions"] if version["current"]), None)
    if current is None:
        return Reading(phase, sent, 0, None, None, None, None, None, False)
    labels, upper = current["window_labels"], current["accuracy_upper"]
    alert = labels >= ALERT_LABELS and upper is not None and upper < reference.lower
    return Reading(
        phase,
        sent,
        labels,
        current["accuracy"],
        current["accuracy_lower"],
        upper,
        current.get("estimated_accuracy"),
        current["coverage"],
        alert,
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


HEADER = (
    f"{'phase':<10}{'sent':>6}{'labels':>8}  {'live accuracy [95 % interval]':<30}{'estimate':>9}{'coverage':>10}"
    "  alert"
)


def line(figures: Reading) -> str:
    interval = "" if figures.lower is None else f" [{_share(figures.lower)}, {_share(figures.upper)}]"
    live = f"{_share(figures.accuracy)}{interval}"
    shown = f"{_share(figures.estimate):>9}{_share(figures.coverage):>10}  {str(figures.alert).lower()}"
    return f"{figures.phase:<10}{figures.sent:>6}{figures.labels:>8}  {live:<30}{shown}"


class Labeller:
    """The biologists: each batch's true species, posted `delay` seconds after its prediction."""

    def __init__(self, api: Api, delay: float) -> None:
        self.api = api
        self.delay = delay
        self.pending: deque[tuple[float, list[dict[str, Any]]]] = deque()

    def predicted(self, request_id: str, labels: Sequence[str]) -> None:
        body = [{"request_id": request_id, "row": row, "label": label} for row, label in enumerate(labels)]
        self.pending.append((time.monotonic() + self.delay, body))

    def post_due(self, wait: bool = False) -> None:
        """Posts the labels whose delay is over; wait: first wait until every pending one is."""
        if wait and self.pending:
            time.sleep(max(0.0, self.pending[-1][0] - time.monotonic()))
        due: list[dict[str, Any]] = []
        while self.pending and self.pending[0][0] <= time.monotonic():
            due += self.pending.popleft()[1]
        if due:
            self.api.feedback(due)


@dataclass(frozen=True)
class Run:
    api: Api
    model: str
    reference: Reference
    batch: int
    pace: float
    labeller: Labeller
    tag: str  # this run's part of each X-Request-ID

    def phase(self, name: str, rows: list[Labelled], say: Callable[[str], None]) -> Reading:
        """Sends one phase's records batch by batch, labels following; a line every tenth of them and at the end."""
        every = max(len(rows) // 10, self.batch)
        sent = 0
        for index, chunk in enumerate(batches(rows, self.batch)):
            request_id = f"demo-{self.tag}-{name}-{index}"
            self.api.predict_as(self.model, [record for record, _ in chunk], request_id)
            self.labeller.predicted(request_id, [label for _, label in chunk])
            sent += len(chunk)
            time.sleep(self.pace)
            self.labeller.post_due()
            if sent % every < len(chunk) and sent < len(rows):
                say(line(self.read(name, sent)))
        self.labeller.post_due(wait=True)
        last = self.read(name, sent)
        say(line(last))
        return last

    def read(self, name: str, sent: int) -> Reading:
        return reading(name, sent, self.api.performance(self.model), self.reference)


STORIES = {
    "realistic": "held-out records as the field sends them, labelled right",
    "concept": "a team's key lumps Chinstrap with Adelie: same records, every Chinstrap labelled Adelie",
    "covariate": f"a team measures bill length from the gape, {GAPE_MM:g} mm longer; labels right",
}


def summary(last: dict[str, Reading], reference: Reference) -> list[str]:
    """What the three phases showed: which fall the live accuracy saw, which the estimate saw too."""
    lines = [f"{'after':<10}{'live':>8}{'estimate':>10}  below the reference"]
    for name, figures in last.items():
        below = figures.upper is not None and figures.upper < reference.lower
        lines.append(f"{name:<10}{_share(figures.accuracy):>8}{_share(figures.estimate):>10}  {str(below).lower()}")
    lines.append("The estimate follows records that move towards the model's boundaries (covariate); only labels")
    lines.append("show a change in what the label means for the same records (concept).")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the API (default http://127.0.0.1:8000)")
    parser.add_argument("--model", default="logistic_regression", help="the model to send traffic to")
    parser.add_argument("--records", type=int, help="records per phase (default: the API's FEEDBACK_WINDOW)")
    parser.add_argument("--batch", type=int, default=50, help="records per request (default 50)")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds from a prediction to its label (default 1)")
    parser.add_argument("--pace", type=float, default=0.1, help="seconds between two requests (default 0.1)")
    parser.add_argument("--seed", type=int, default=SEED, help=f"seed of the resampling (default {SEED})")
    parser.add_argument("--data-dir", help="folder holding penguins.csv (env DATA_DIR, default data)")
    args = parser.parse_args()
    api = Api(args.url, os.environ.get("API_TOKEN", ""))
    reference = reference_of(api.model(args.model))
    window = api.performance(args.model)["window"]
    count = args.records or window
    rng = random.Random(args.seed)
    rows = held_out(resolve_dir(args.data_dir, "DATA_DIR", "data"))
    run = Run(api, args.model, reference, args.batch, args.pace, Labeller(api, args.delay), os.urandom(4).hex())

    def say(text: str) -> None:
        print(text, flush=True)

    say(
        f"{args.model}: reference accuracy {reference.mean:.3f} [{reference.lower:.3f}, {reference.upper:.3f}] "
        f"from training; live figures over its last {window} labelled records; labels {args.delay:g} s late"
    )
    last: dict[str, Reading] = {}
    for name in PHASES:
        say(f"-- {name}: {STORIES[name]}")
        say(HEADER)
        last[name] = run.phase(name, phase_rows(name, resampled(rows, count, rng)), say)
    for text in summary(last, reference):
        say(text)
    say(f"See {args.url}/monitor")


if __name__ == "__main__":
    main()
