"""The ground truth on /monitor: each model's live and estimated accuracy drawn against its reference from
training, the confusion matrix of its window, the share of predictions labelled and the labels' delay.

The figures are the recorder's cached ones (app/capture/), the same /metrics reads: a page view costs the store
nothing more. Capture off, or a store that cannot be read, is one line in each model's section; the rest of the
page is drawn as ever. Everything is inline HTML and CSS, like the rest of the page.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

from app.capture import Performance
from app.dataplane import DataPlane
from app.errors import StoreUnavailable
from app.reference_accuracy import ReferenceAccuracy
from app.registry import LoadedModel

logger = logging.getLogger("app")

# Labels in the window below which the live accuracy is not judged against the reference: the threshold of the
# PenguinsLiveAccuracyBelowReference alert, below which a Wilson interval is some 10 points wide.
MIN_LABELS = 50
# The scale's left end, unless a figure shown lies further left: then the tenth below it. Zoomed in so that the
# points that matter between two good models (98 against 95 %) can be told apart.
SCALE_FROM = 0.9
CAPTURE_OFF = "Capture is off (CAPTURE=0): no prediction is kept, so there is no live accuracy."
STORE_DOWN = "The capture store cannot be read now (the cause is in the server log): no live accuracy."

TRUTH_STYLE = """
.truth { display: grid; grid-template-columns: minmax(24rem, 2fr) minmax(16rem, 1fr); gap: .5rem 2rem;
  margin: .5rem 0 1rem; }
@media (max-width: 48rem) { .truth { grid-template-columns: 1fr; } }
table.accuracy th { text-align: left; font-weight: normal; padding-right: .5rem; white-space: nowrap; width: 1%; }
table.accuracy td.figure { width: 1%; text-align: right; font-variant-numeric: tabular-nums; }
.track { position: relative; height: 16px; background: #f1f3f5; border-radius: 3px; }
.track > span { position: absolute; }
.track .band { top: 0; bottom: 0; background: #c9d0d8; }
.track .mean { top: 0; bottom: 0; width: 2px; margin-left: -1px; background: #66717d; }
.track .interval { top: 6px; height: 4px; border-radius: 2px; background: #2f6fd0; }
.track .point { top: 3px; width: 10px; height: 10px; margin-left: -5px; border-radius: 50%; background: #2f6fd0; }
.track .estimate { top: 3px; width: 9px; height: 9px; margin-left: -5px; transform: rotate(45deg);
  background: #8a4fbf; }
.track.below .interval, .track.below .point { background: #c62828; }
.axis { position: relative; height: 1.1em; font-size: 11px; color: #666; }
.axis span { position: absolute; transform: translateX(-50%); }
table.confusion { width: auto; }
table.confusion th { font-weight: normal; color: #555; padding: 1px 6px; text-align: right; }
table.confusion td { text-align: right; padding: 2px 8px; font-variant-numeric: tabular-nums; }
.verdict { font-weight: 600; padding: 1px 6px; border-radius: 3px; margin-left: .5rem; font-size: 13px; }
.verdict.consistent, .verdict.above { background: #d7f2dc; color: #135c25; }
.verdict.below { background: #fbd5d5; color: #8e1b1b; } .verdict.few { background: #eee; color: #555; }
td.hit { background: #d7f2dc; } td.miss { background: #fbd5d5; }
.key.band { background: #c9d0d8; height: 12px; } .key.interval { background: #2f6fd0; height: 4px; }
.key.estimate { width: 8px; height: 8px; transform: rotate(45deg); background: #8a4fbf; margin: 0 4px; }
"""


@dataclass(frozen=True)
class GroundTruth:
    """What the page shows of the labels: the figures of every version shown, or why there are none."""

    versions: tuple[Performance, ...] = ()
    window: int = 0  # FEEDBACK_WINDOW
    unavailable: str | None = None

    def of(self, model: str) -> list[Performance]:
        return [version for version in self.versions if version.model == model]


def ground_truth(plane: DataPlane) -> GroundTruth:
    """The recorder's cached figures (blocking when they are older than its cache); never an error."""
    recorder = plane.capture
    if recorder is None:
        return GroundTruth(unavailable=CAPTURE_OFF)
    try:
        # The names /metrics reads too, so that both share the recorder's cached figures.
        figures = recorder.figures([name.removesuffix(".pkl") for name in plane.available()])
    except StoreUnavailable as error:
        logger.warning("/monitor is drawn without the live accuracy: %s", error)
        return GroundTruth(unavailable=STORE_DOWN)
    return GroundTruth(tuple(figures.versions), recorder.window)


def legend() -> str:
    return (
        '<p class="note">Accuracy: <span class="key band"></span> the 95 % interval measured at training '
        '(cross-validation), its mean a line; <span class="key interval"></span> the live accuracy on the '
        "labelled records of the window, a dot in its 95 % interval, red when the whole interval lies below "
        'the training one; <span class="key estimate"></span> the accuracy estimated from the calibrated '
        f"confidence of the recent predictions, labelled or not. Not judged with fewer than {MIN_LABELS} labels.</p>"
    )


def truth_section(model: LoadedModel, truth: GroundTruth) -> str:
    versions = truth.of(model.stem)
    current = next((version for version in versions if version.version == model.version), None)
    older = [version for version in versions if version.version != model.version]
    confusion = _confusion(current) if current is not None and current.window_labels else ""
    return (
        f'<div class="truth"><div>{_accuracy(model.reference_accuracy, current, truth)}</div>{confusion}</div>'
        f"{_older(older)}"
    )


# --- accuracy against the reference ----------------------------------------------------------------------------


def _accuracy(reference: ReferenceAccuracy | None, live: Performance | None, truth: GroundTruth) -> str:
    estimate = live.estimated_accuracy if live is not None else None
    labelled = live is not None and live.accuracy is not None
    low = _scale_start(reference, live if labelled else None, estimate)
    rows = [_reference_row(reference, low)] if reference is not None else []
    if live is not None and labelled:
        rows.append(_live_row(live, reference, low))
    if estimate is not None and live is not None:
        rows.append(_estimate_row(estimate, live.estimated_records, reference, low))
    table = f'<table class="accuracy">{"".join(rows)}{_axis(low)}</table>' if rows else ""
    lines = [_status(live, truth)]
    if reference is None:
        lines.append("The model file holds no reference accuracy from training.")
    head = f"<h3>Accuracy{_verdict(reference, live)}</h3>"
    return head + table + "".join(f'<p class="note">{escape(line)}</p>' for line in lines if line)


def _scale_start(reference: ReferenceAccuracy | None, live: Performance | None, estimate: float | None) -> float:
    shown = [SCALE_FROM, estimate]
    shown += [reference.lower] if reference is not None else []
    shown += [live.lower] if live is not None else []
    lowest = min(value for value in shown if value is not None)
    return math.floor(lowest * 10) / 10


def _at(value: float, low: float) -> float:
    """The value's place on the scale from low to 1, in percent of its width."""
    return 100 * (value - low) / (1 - low)


def _span(kind: str, start: float, end: float, low: float) -> str:
    left = _at(start, low)
    return f'<span class="{kind}" style="left: {left:.2f}%; width: {_at(end, low) - left:.2f}%"></span>'


def _mark(kind: str, value: float, low: float, title: str) -> str:
    return f'<span class="{kind}" style="left: {_at(value, low):.2f}%" title="{escape(title)}"></span>'


def _band(reference: ReferenceAccuracy | None, low: float) -> str:
    return "" if reference is None else _span("band", reference.lower, reference.upper, low)


def _row(name: str, track: str, figure: str, css: str = "") -> str:
    return (
        f'<tr><th>{name}</th><td class="bars"><div class="track{css}">{track}</div></td>'
        f'<td class="figure">{figure}</td></tr>'
    )


def _reference_row(reference: ReferenceAccuracy, low: float) -> str:
    track = _band(reference, low) + _mark("mean", reference.mean, low, f"mean {_percent(reference.mean)}")
    figure = f"{_percent(reference.mean)} <small>{_interval(reference.lower, reference.upper)}</small>"
    return _row("training", track, figure)


def _live_row(live: Performance, reference: ReferenceAccuracy | None, low: float) -> str:
    assert live.accuracy is not None and live.lower is not None and live.upper is not None
    track = _band(reference, low) + _span("interval", live.lower, live.upper, low)
    track += _mark("point", live.accuracy, low, f"live {_percent(live.accuracy)}")
    below = reference is not None and live.upper < reference.lower
    figure = f"{_percent(live.accuracy)} <small>{_interval(live.lower, live.upper)}</small>"
    return _row(f"live <small>{live.window_labels:,} labels</small>", track, figure, " below" if below else "")


def _estimate_row(estimate: float, records: int, reference: ReferenceAccuracy | None, low: float) -> str:
    track = _band(reference, low) + _mark("estimate", estimate, low, f"estimated {_percent(estimate)}")
    return _row(f"estimated <small>{records:,} records</small>", track, _percent(estimate))


def _axis(low: float) -> str:
    # A tick every 10 points, or every 5 on a short scale.
    step = 5 if low >= 0.7 else 10
    ticks = "".join(
        f'<span style="left: {_at(percent / 100, low):.2f}%">{percent} %</span>'
        for percent in range(round(100 * low), 101, step)
    )
    return f'<tr><th></th><td><div class="axis">{ticks}</div></td><td></td></tr>'


def _verdict(reference: ReferenceAccuracy | None, live: Performance | None) -> str:
    if reference is None or live is None or live.lower is None or live.upper is None:
        return ""
    if live.window_labels < MIN_LABELS:
        css, text = "few", f"{live.window_labels} labels: too few to judge"
    elif live.upper < reference.lower:
        css, text = "below", "below the training interval"
    elif live.lower > reference.upper:
        css, text = "above", "above the training interval"
    else:
        css, text = "consistent", "consistent with training"
    return f'<span class="verdict {css}">{escape(text)}</span>'


def _status(live: Performance | None, truth: GroundTruth) -> str:
    """One line on the labels: why there are none, or how many, how complete and how late."""
    if truth.unavailable is not None:
        return truth.unavailable
    if live is None:
        return "Nothing captured for this version yet: no live accuracy."
    if live.coverage is None or live.recent == 0:
        return "No prediction of this version is recent enough to measure coverage on."
    coverage = f"{live.coverage:.0%} of the last {live.recent:,} predictions labelled"
    if not live.window_labels:
        return f"No labels yet: {coverage}. POST /feedback joins them by request ID."
    delays = ", ".join(f"p{round(100 * quantile)} {_duration(seconds)}" for quantile, seconds in live.delays.items())
    window = f"Live accuracy on the last {live.window_labels:,} labelled records (window {truth.window:,})"
    return f"{window}; {coverage}; label delay {delays}."


# --- the confusion matrix, older versions ----------------------------------------------------------------------


def _confusion(live: Performance) -> str:
    labels = list(dict.fromkeys([*live.classes, *(label for label, _ in live.confusion)]))
    head = "".join(f"<th>{escape(predicted)}</th>" for predicted in live.classes)
    rows = "".join(
        f"<tr><th>{escape(label)}</th>{''.join(_cell(live, label, predicted) for predicted in live.classes)}</tr>"
        for label in labels
    )
    return (
        f"<div><h3>Confusion <small>true label by predicted, {live.window_labels:,} records</small></h3>"
        f'<table class="confusion"><tr><th>true \\ predicted</th>{head}</tr>{rows}</table></div>'
    )


def _cell(live: Performance, label: str, predicted: str) -> str:
    count = live.confusion.get((label, predicted), 0)
    css = "hit" if label == predicted and count else "miss" if count else ""
    return f'<td class="{css}">{count:,}</td>' if css else f"<td>{count:,}</td>"


def _older(versions: list[Performance]) -> str:
    if not versions:
        return ""
    items = "; ".join(_version_line(version) for version in versions)
    return f'<p class="note">Other versions still in the store: {items}.</p>'


def _version_line(version: Performance) -> str:
    seen = f"{escape(version.version)} (last captured {_day(version.last_at)})"
    if version.accuracy is None or version.lower is None or version.upper is None:
        return f"{seen}: no labels"
    figures = f"{_percent(version.accuracy)} ({_interval(version.lower, version.upper)})"
    return f"{seen}: {figures} on {version.window_labels:,} labels"


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %"


def _interval(lower: float, upper: float) -> str:
    return f"{100 * lower:.1f}&ndash;{100 * upper:.1f}"


def _day(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"
