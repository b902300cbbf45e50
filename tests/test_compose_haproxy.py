"""compose/haproxy/haproxy.cfg, checked by HAProxy itself (Debian's package): the shipped file, and broken copies.

How it behaves in front of real replicas is tests/test_compose_replicas.py's job (`make test-compose`).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT

CONFIG = ROOT / "compose" / "haproxy" / "haproxy.cfg"


def haproxy_check(config: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("haproxy")
    assert binary, "haproxy (Debian package haproxy) is needed: .ci/run installs it"
    return subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True, timeout=60)


def test_haproxy_accepts_the_shipped_config() -> None:
    checked = haproxy_check(CONFIG)

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "[WARNING]" not in checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("shipped", "broken"),
    [
        pytest.param("retry-on conn-failure empty-response", "retry-on conn-failure empty-answer", id="retry-event"),
        pytest.param("balance leastconn", "balance fewest", id="algorithm"),
        pytest.param("api:8000 resolvers docker", "api:8000 resolvers dns", id="unknown-resolvers"),
    ],
)
def test_haproxy_refuses_a_broken_copy(tmp_path: Path, shipped: str, broken: str) -> None:
    text = CONFIG.read_text()
    assert shipped in text
    copy = tmp_path / "haproxy.cfg"
    copy.write_text(text.replace(shipped, broken))

    assert haproxy_check(copy).returncode != 0


def test_the_makefile_caps_replicas_at_haproxys_slots() -> None:
    slots = next(line.split()[2] for line in CONFIG.read_text().splitlines() if line.strip().startswith("server-"))
    printed = subprocess.run(
        ["make", "--no-print-directory", "-n", "-p", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout

    assert f"MAX_REPLICAS := {slots}" in printed
