"""The figures compose/README.md and app/README.md quote are read from the files they describe.

Each claim is a phrase of a README with the figure in it (a pattern with one group) and where the figure lives:
HAProxy's configuration (compose/haproxy/haproxy.cfg, its "${NAME}" values as compose/replicas.yml gives them),
Prometheus's (compose/prometheus/prometheus.yml) or a Kubernetes manifest. A README rewritten so that a phrase no
longer appears fails too: the claim is then to be rewritten with it, not dropped.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT
from tests.test_compose_haproxy import HAPROXY_VARIABLE, directives, haproxy_environment

COMPOSE_README = ROOT / "compose" / "README.md"
APP_README = ROOT / "app" / "README.md"
PROMETHEUS = ROOT / "compose" / "prometheus" / "prometheus.yml"
KUBERNETES = ROOT / "compose" / "kubernetes"
# How the READMEs write small counts.
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5}
# HAProxy's and Prometheus's time units, in seconds; a bare number is milliseconds to HAProxy.
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


# --- the files, read --------------------------------------------------------------------------------


def seconds(duration: str) -> float:
    """A duration as HAProxy and Prometheus write it (500ms, 1s, 5m) in seconds."""
    written = re.fullmatch(r"(\d+(?:\.\d+)?)(us|ms|s|m|h|d)?", duration)
    assert written, f"{duration!r} is not a duration"
    return float(written[1]) * UNITS[written[2] or "ms"]


@cache
def haproxy_lines() -> tuple[tuple[str, ...], ...]:
    """haproxy.cfg's directives, split into words, with "${NAME}" given the value compose passes by default."""
    environment = haproxy_environment()
    text = HAPROXY_VARIABLE.sub(lambda variable: environment[variable[1]], directives()).replace('"', "")
    return tuple(tuple(line.split()) for line in text.splitlines() if line.strip())


def haproxy(*keywords: str) -> str:
    """The word after `keywords` on the one line that begins with them (`timeout connect` -> 1s)."""
    (line,) = [line for line in haproxy_lines() if line[: len(keywords)] == keywords]
    return line[len(keywords)]


def default_server(option: str) -> str:
    """An option of the backend's default-server line (inter, fall, ...), which takes one value."""
    line = next(line for line in haproxy_lines() if line[0] == "default-server")
    return line[line.index(option) + 1]


def server_slots() -> int:
    line = next(line for line in haproxy_lines() if line[0] == "server-template")
    return int(line[2])


@cache
def prometheus() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(PROMETHEUS.read_text())
    return parsed


def kubernetes(kind: str) -> dict[str, Any]:
    """The one document of that kind among the manifests."""
    paths = sorted(KUBERNETES.glob("*.yaml")) + sorted(KUBERNETES.glob("kserve/*.yaml"))
    documents = [body for path in paths for body in yaml.safe_load_all(path.read_text()) if body]
    (found,) = [body for body in documents if body["kind"] == kind]
    return dict(found)


def api_pod() -> dict[str, Any]:
    pod: dict[str, Any] = kubernetes("Deployment")["spec"]["template"]["spec"]
    return pod


# --- the claims -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Claim:
    readme: Path
    phrase: str  # a regular expression over the README's text (line breaks read as spaces), one group: the figure
    actual: Callable[[], float]  # the figure in the file the README describes


CLAIMS = {
    # HAProxy: the slots, the DNS, the health checks, the buffer, the timeouts.
    "slots-make": Claim(COMPOSE_README, r"`--scale api=N` \(up to (\d+)\)", server_slots),
    "slots-setting": Claim(COMPOSE_README, r"at most (\d+), HAProxy's slots", server_slots),
    "slots-template": Claim(COMPOSE_README, r"`server-template`, (\d+) of them", server_slots),
    "dns": Claim(COMPOSE_README, r"`resolvers`, every ([\d.]+) s", lambda: seconds(haproxy("timeout", "resolve"))),
    "check-up": Claim(
        COMPOSE_README, r"every ([\d.]+) s while it is in the rotation \(`inter`\)",
        lambda: seconds(default_server("inter")),
    ),
    "check-down": Claim(
        COMPOSE_README, r"every ([\d.]+) s once it is out \(`downinter`\)", lambda: seconds(default_server("downinter"))
    ),
    "fall": Claim(COMPOSE_README, r"(\w+) failed checks in a row take it out \(`fall`\)",
                  lambda: int(default_server("fall"))),
    "rise": Claim(COMPOSE_README, r"(\w+) passed ones put it back \(`rise`\)", lambda: int(default_server("rise"))),
    "buffer": Claim(COMPOSE_README, r"its buffer \((\d+) kB", lambda: int(haproxy("tune.bufsize")) / 1024),
    "body-timeout": Claim(
        COMPOSE_README, r"`BODY_TIMEOUT` \((\d+) s; `timeout http-request`\)",
        lambda: seconds(haproxy("timeout", "http-request")),
    ),
    "keep-alive-timeout": Claim(
        COMPOSE_README, r"`KEEP_ALIVE_TIMEOUT` \((\d+) s; `timeout http-keep-alive`\)",
        lambda: seconds(haproxy("timeout", "http-keep-alive")),
    ),
    "graceful-timeout": Claim(
        COMPOSE_README, r"`GRACEFUL_TIMEOUT` \((\d+) s; `hard-stop-after`\)",
        lambda: seconds(haproxy("hard-stop-after")),
    ),
    "connect-timeout": Claim(
        COMPOSE_README, r"(\d+) s to connect to a replica \(`timeout connect`\)",
        lambda: seconds(haproxy("timeout", "connect")),
    ),
    "client-timeout": Claim(
        COMPOSE_README, r"(\d+) s of silence from a client or a replica [^(]*\(`timeout client`",
        lambda: seconds(haproxy("timeout", "client")),
    ),
    "server-timeout": Claim(
        COMPOSE_README, r"(\d+) s of silence from a client or a replica [^(]*\(`timeout client`, `timeout server`\)",
        lambda: seconds(haproxy("timeout", "server")),
    ),
    # Prometheus: how often it scrapes, and how often it asks the DNS for the replicas.
    "scrape-table": Claim(
        COMPOSE_README, r"found by DNS, every (\d+) s", lambda: seconds(prometheus()["global"]["scrape_interval"])
    ),
    "scrape-section": Claim(
        COMPOSE_README, r"on port 8000 of each, every (\d+) s",
        lambda: seconds(prometheus()["global"]["scrape_interval"]),
    ),
    "scrape-app": Claim(
        APP_README, r"scraping it every (\d+) s", lambda: seconds(prometheus()["global"]["scrape_interval"])
    ),
    "dns-sd": Claim(
        COMPOSE_README, r"\(`dns_sd_configs`, every (\d+) s\)",
        lambda: seconds(prometheus()["scrape_configs"][0]["dns_sd_configs"][0]["refresh_interval"]),
    ),
    # Kubernetes: the autoscalers, and a pod's stop.
    "hpa-min": Claim(COMPOSE_README, r"keeps (\d+) to \d+ replicas",
                     lambda: kubernetes("HorizontalPodAutoscaler")["spec"]["minReplicas"]),
    "hpa-max": Claim(COMPOSE_README, r"keeps \d+ to (\d+) replicas",
                     lambda: kubernetes("HorizontalPodAutoscaler")["spec"]["maxReplicas"]),
    "hpa-cpu": Claim(
        COMPOSE_README, r"use about (\d+) % of the CPU",
        lambda: kubernetes("HorizontalPodAutoscaler")["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
    ),
    "hpa-table": Claim(COMPOSE_README, r"`HorizontalPodAutoscaler` \((\d+) to \d+ replicas\)",
                       lambda: kubernetes("HorizontalPodAutoscaler")["spec"]["minReplicas"]),
    "kserve-min": Claim(COMPOSE_README, r"an HPA, (\d+) to \d+ replicas",
                        lambda: kubernetes("InferenceService")["spec"]["predictor"]["minReplicas"]),
    "kserve-max": Claim(COMPOSE_README, r"an HPA, \d+ to (\d+) replicas",
                        lambda: kubernetes("InferenceService")["spec"]["predictor"]["maxReplicas"]),
    "kserve-cpu": Claim(COMPOSE_README, r"replicas at (\d+) % CPU",
                        lambda: kubernetes("InferenceService")["spec"]["predictor"]["scaleTarget"]),
    "pre-stop": Claim(
        COMPOSE_README, r"first waits (\d+) s \(`preStop`\)",
        lambda: api_pod()["containers"][0]["lifecycle"]["preStop"]["sleep"]["seconds"],
    ),
    "graceful-kubernetes": Claim(
        COMPOSE_README, r"\(`GRACEFUL_TIMEOUT=(\d+)`, within",
        lambda: int(kubernetes("ConfigMap")["data"]["GRACEFUL_TIMEOUT"]),
    ),
    "grace-period": Claim(
        COMPOSE_README, r"within the (\d+) s grace period", lambda: api_pod()["terminationGracePeriodSeconds"]
    ),
}  # fmt: skip


def quoted(claim: Claim, readme: str) -> list[float]:
    """Each figure the README gives in the claim's phrase."""
    text = " ".join(readme.split())
    return [float(WORDS.get(written, written)) for written in re.findall(claim.phrase, text)]


@pytest.mark.parametrize("name", list(CLAIMS))
def test_the_readme_quotes_the_figure_of_the_config(name: str) -> None:
    claim = CLAIMS[name]

    figures = quoted(claim, claim.readme.read_text())

    assert figures, f"{claim.readme.relative_to(ROOT)} no longer says {claim.phrase!r}: rewrite the claim with it"
    assert set(figures) == {float(claim.actual())}, f"{name}: the README says {figures}, the config {claim.actual()}"


def test_a_figure_that_drifted_from_the_config_is_caught() -> None:
    """The README once said a replica out of the rotation is checked every 0.5 s; the config says 1 s."""
    claim = CLAIMS["check-down"]
    drifted = claim.readme.read_text().replace("every 1 s once it is out", "every 0.5 s once it is out")

    assert quoted(claim, drifted) == [0.5] != [claim.actual()]
