"""The drift figures (app/monitoring/) in this dialect: JSON for scripts, one HTML page for a person.

The page is made here, whole, with its style inline: no script, no file from anywhere else, so it works offline
and its Content-Security-Policy can forbid everything else.
"""

from __future__ import annotations

from html import escape
from typing import Any

from app.monitoring.figures import MODERATE_FROM, SIGNIFICANT_ABOVE, Distribution, DriftReport
from app.original.monitor_feedback import TRUTH_STYLE, GroundTruth, legend, truth_section
from app.original.monitor_routes import ROUTES_STYLE
from app.registry import LoadedModel
from app.rules import MIN_RECORDS

# Seconds between the page's reloads: a drift can be watched as it happens.
REFRESH_SECONDS = 10
# The page may use its own inline style and nothing else.
PAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
THRESHOLDS = {"moderate": MODERATE_FROM, "significant": SIGNIFICANT_ABOVE, "min_records": MIN_RECORDS}


def drift_body(model: LoadedModel, report: DriftReport) -> dict[str, Any]:
    """GET /models/{name}/drift's answer (ModelDrift)."""
    predictions = report.predictions
    confidence = report.confidence
    return {
        "model": model.name,
        "version": model.version,
        "monitored": report.reason is None,
        "reason": report.reason,
        "window": {"size": report.window_size, "records": report.window_records},
        "records": report.records,
        "reference_rows": report.reference_rows if report.reason is None else None,
        "thresholds": THRESHOLDS,
        "features": {
            feature.name: {**bins(feature), "out_of_range": feature.out_of_range} for feature in report.features
        },
        "predictions": None if predictions is None else {**bins(predictions), "total": dict(report.predicted)},
        "confidence": None
        if confidence is None
        else {
            "buckets": list(confidence.buckets),
            "counts": list(confidence.counts),
            "sum": confidence.total,
            "window_mean": confidence.window_mean,
        },
    }


def bins(distribution: Distribution) -> dict[str, Any]:
    return {
        "bins": list(distribution.bins),
        "reference": list(distribution.reference),
        "window": list(distribution.window),
        "psi": distribution.psi,
        "level": distribution.level,
    }


# --- the page ---------------------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.4 system-ui, sans-serif; margin: 1.5rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.25rem; margin-bottom: .25rem; } h3 { font-size: 1rem; margin: .5rem 0; }
small, .note { color: #666; }
section.model { border-top: 1px solid #ccc; padding-top: .5rem; margin-top: 1.5rem; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(21rem, 1fr)); gap: .5rem 1.5rem; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
td { padding: 1px 4px; vertical-align: middle; white-space: nowrap; }
td.bars { width: 100%; }
.bar { display: block; height: 6px; margin: 1px 0; border-radius: 2px; }
.reference { background: #9aa5b1; } .window { background: #2f6fd0; }
.psi { font-weight: 600; padding: 1px 6px; border-radius: 3px; margin-left: .5rem; font-size: 13px; }
.stable { background: #d7f2dc; color: #135c25; } .moderate { background: #fdf0c4; color: #7a5600; }
.significant { background: #fbd5d5; color: #8e1b1b; }
.problem { background: #fbd5d5; color: #8e1b1b; padding: .4rem .6rem; }
.no-records, .too-few-records { background: #eee; color: #555; }
.key { display: inline-block; width: 1.5rem; height: 6px; vertical-align: middle; }
"""


def monitor_page(
    models: list[tuple[LoadedModel, DriftReport]],
    skipped: dict[str, str],
    root_path: str,
    truth: GroundTruth,
    routes_problem: str | None = None,
    routes: str = "",
) -> str:
    """routes_problem: why routes.json is refused now (app/routes.py), shown above the models; routes: a section
    per route (app/original/monitor_routes.py), above the models too."""
    sections = [routes] if routes else []
    sections += [_model_section(model, report, root_path, truth) for model, report in models]
    sections += [_skipped_section(name, detail) for name, detail in skipped.items()]
    body = "\n".join(sections) or "<p>No model file in MODELS_DIR.</p>"
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="{REFRESH_SECONDS}">
<title>Penguin models: monitoring</title>
<style>{STYLE}{TRUTH_STYLE}{ROUTES_STYLE}</style>
</head>
<body>
<h1>Penguin models: monitoring</h1>
{_routes_problem(routes_problem)}{_legend()}
{legend()}
{body}
</body>
</html>
"""


def _routes_problem(problem: str | None) -> str:
    return "" if problem is None else f'<p class="problem">{escape(problem)}.</p>\n'


def _legend() -> str:
    return (
        '<p class="note">Each model\'s last records (its window) against the training rows its file describes. '
        '<span class="key reference"></span> training, <span class="key window"></span> window. '
        f'PSI: <span class="psi stable">below {MODERATE_FROM} stable</span>'
        f'<span class="psi moderate">{MODERATE_FROM} to {SIGNIFICANT_ABOVE} moderate</span>'
        f'<span class="psi significant">above {SIGNIFICANT_ABOVE} significant</span>; '
        f"not judged with fewer than {MIN_RECORDS} records in the window. "
        f"The page reloads every {REFRESH_SECONDS} s.</p>"
    )


def _model_section(model: LoadedModel, report: DriftReport, root_path: str, truth: GroundTruth) -> str:
    name = escape(model.stem)
    links = [_link(root_path, model, "drift", "drift JSON")]
    links += [_link(root_path, model, "performance", "accuracy JSON")] if truth.unavailable is None else []
    head = f"<h2>{name} <small>version {escape(model.version)} · {' · '.join(links)}</small></h2>"
    opening = f'<section class="model" id="{name}">{head}{truth_section(model, truth)}<h3>Drift</h3>'
    if report.reason is not None:
        return f"{opening}<p>{escape(report.reason.capitalize())}.</p></section>"
    summary = (
        f"<p>{report.window_records:,} of {report.window_size:,} records in the window; "
        f"{report.records:,} predicted since this file was first used; "
        f"the profile describes {report.reference_rows:,} training rows.{_confidence_note(report)}</p>"
    )
    cards = [_card("Predicted class", report.predictions)] if report.predictions else []
    cards += [_card(feature.name, feature) for feature in report.features]
    return f'{opening}{summary}<div class="grid">{"".join(cards)}</div></section>'


def _link(root_path: str, model: LoadedModel, figures: str, text: str) -> str:
    target = escape(f"{root_path}/models/{model.stem}/{figures}", quote=True)
    return f'<a href="{target}">{text}</a>'


def _confidence_note(report: DriftReport) -> str:
    confidence = report.confidence
    if confidence is None or confidence.window_mean is None:
        return ""
    return f" Mean top probability in the window: {confidence.window_mean:.3f}."


def _card(title: str, distribution: Distribution) -> str:
    scale = max(*distribution.reference, *distribution.window, 1e-9)
    rows = "".join(
        f'<tr><td>{escape(label)}</td><td class="bars">{_bar("reference", expected, scale)}'
        f"{_bar('window', actual, scale)}</td><td>{expected:.0%} · {actual:.0%}</td></tr>"
        for label, expected, actual in zip(distribution.bins, distribution.reference, distribution.window, strict=True)
    )
    extra = f" <small>{distribution.out_of_range:,} out of range</small>" if distribution.out_of_range else ""
    return f"<div><h3>{escape(title)}{_psi_badge(distribution)}{extra}</h3><table>{rows}</table></div>"


def _bar(kind: str, share: float, scale: float) -> str:
    return f'<span class="bar {kind}" style="width: {100 * share / scale:.1f}%"></span>'


def _psi_badge(distribution: Distribution) -> str:
    css = distribution.level.replace(" ", "-")
    figure = "no records yet" if distribution.psi is None else f"PSI {distribution.psi:.3f}"
    return f'<span class="psi {css}" title="{escape(distribution.level)}">{figure}</span>'


def _skipped_section(name: str, detail: str) -> str:
    return f'<section class="model"><h2>{escape(name)}</h2><p>{escape(detail)}</p></section>'
