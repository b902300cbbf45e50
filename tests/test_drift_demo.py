"""scripts/drift_demo.py against a live server: resampled traffic stays stable, body mass in pounds drifts alone.

Why this holds by arithmetic, not by luck (the seeds are fixed anyway). A window of 1,000 records drawn from the
333 rows of the data set is compared with the 266 training rows, 80 % of those rows. Two things part them:
the data set's own shares against its training part, a PSI below 0.013 for every feature; and sampling, whose
PSI over k bins and n records is about (k - 1) / n, 0.009 for 10 bins, with a standard deviation near
sqrt(2 (k - 1)) / n, 0.004. The 0.1 threshold is some twenty standard deviations away. In pounds, every body
mass (at most 6,300 g, 13.9 lb) falls below the training minimum, in the first bin: a share of 1 against about
0.11, a PSI near 8, while every other feature of the same records stays as above.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from drift_demo import Api, in_pounds, penguin_records, phase, resampled
from penguins import FEATURES, SEED
from pydantic import SecretStr

from app.config import Settings
from app.main import create_app
from tests.helpers import ROOT, run_script
from tests.live import LiveServer, uvicorn_in_thread

WINDOW = 1000  # DRIFT_WINDOW's default: the server's own


@pytest.fixture
def live(live_server: LiveServer) -> LiveServer:
    """The shared server: each phase sends a whole window of records, so what others sent it before is gone."""
    return live_server


def psi_of_each_feature(figures: dict[str, object]) -> dict[str, float]:
    features = figures["features"]
    assert isinstance(features, dict)
    return {name: features[name]["psi"] for name in FEATURES}


def test_resampled_traffic_keeps_every_feature_below_0_1(live: LiveServer) -> None:
    records = resampled(penguin_records(ROOT / "data"), WINDOW, random.Random(SEED))
    figures = phase(Api(live.url), "logistic_regression", "realistic", records, 50, lambda line: None)

    assert figures["window"] == {"size": WINDOW, "records": WINDOW}
    assert max(psi_of_each_feature(figures).values()) < 0.1
    assert {feature["level"] for feature in figures["features"].values()} == {"stable"}


def test_body_mass_in_pounds_drifts_and_the_other_features_do_not(live: LiveServer) -> None:
    records = in_pounds(resampled(penguin_records(ROOT / "data"), WINDOW, random.Random(SEED + 1)))
    figures = phase(Api(live.url), "logistic_regression", "pounds", records, 50, lambda line: None)

    psi = psi_of_each_feature(figures)
    assert psi.pop("body_mass_g") > 0.25
    assert max(psi.values()) < 0.1
    assert figures["features"]["body_mass_g"]["window"][0] == 1.0  # every record below the first decile


def test_the_demo_prints_the_drift_as_it_happens(live: LiveServer) -> None:
    result = run_script("drift_demo.py", "--url", live.url, "--model", "svc", "--batch", "100")
    assert result.returncode == 0, result.stderr

    lines = result.stdout.splitlines()
    realistic = [line for line in lines if line.startswith("realistic")]
    pounds = [line for line in lines if line.startswith("pounds")]
    assert len(realistic) == len(pounds) == 10
    body_mass = [float(line.split()[2 + FEATURES.index("body_mass_g")]) for line in pounds]
    assert body_mass == sorted(body_mass) and body_mass[-1] > 0.25  # it climbs as the shifted records come in
    assert lines[-1] == f"drifted (PSI above 0.25): body_mass_g. See {live.url}/monitor"


def test_the_demo_sends_the_api_token_when_one_is_set(models_dir: Path) -> None:
    token = "drift-demo-0123456789abcdef"
    with uvicorn_in_thread(create_app(Settings(models_dir=models_dir, api_token=SecretStr(token)))) as url:
        refused = run_script("drift_demo.py", "--url", url, "--records", "100")
        result = run_script("drift_demo.py", "--url", url, "--records", "100", env={"API_TOKEN": token})

    assert refused.returncode == 1 and "answered 401" in refused.stderr
    assert result.returncode == 0, result.stderr
