"""compose/haproxy/haproxy.cfg, checked by HAProxy itself (Debian's package): the shipped file, and broken copies;
and its service in compose/replicas.yml, which gives it the API's settings it reads and the network it shares.

How it behaves in front of real replicas is tests/test_compose_replicas.py's job (`make test-compose`).
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import ServerSettings, Settings
from tests.helpers import ROOT

CONFIG = ROOT / "compose" / "haproxy" / "haproxy.cfg"
REPLICAS = ROOT / "compose" / "replicas.yml"
# "${NAME}" in HAProxy's configuration: the environment variable NAME.
HAPROXY_VARIABLE = re.compile(r"\$\{(\w+)\}")
# NAME=${NAME:-default} in a compose environment list: the variable passed through, with its default.
PASSED_WITH_DEFAULT = re.compile(r"(\w+)=\$\{(\w+):-([^}]*)\}")
# ${REPLICAS_NETWORK:-default}<rest>: an address built on the network's first three numbers.
ON_THE_NETWORK = re.compile(r"\$\{REPLICAS_NETWORK:-([0-9.]+)\}(.*)")


@cache
def replicas_file() -> dict[str, Any]:
    parsed: dict[str, Any] = yaml.safe_load(REPLICAS.read_text())
    return parsed


def directives() -> str:
    """haproxy.cfg without its comments."""
    return "\n".join(line.partition("#")[0] for line in CONFIG.read_text().splitlines())


def haproxy_environment() -> dict[str, str]:
    """What compose gives HAProxy when .env sets none of it: each variable's default, as replicas.yml states it."""
    defaults = {}
    for entry in replicas_file()["services"]["haproxy"]["environment"]:
        passed = PASSED_WITH_DEFAULT.fullmatch(entry)
        assert passed and passed[1] == passed[2], f"{entry} is not NAME=${{NAME:-default}}"
        defaults[passed[1]] = passed[3]
    return defaults


def app_default(variable: str) -> Any:
    """The API's own default for one of its settings."""
    for settings in (Settings, ServerSettings):
        field = settings.model_fields.get(variable.lower())
        if field is not None:
            return field.default
    raise AssertionError(f"{variable} is not a setting of the API")


def haproxy_check(config: Path, environment: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("haproxy")
    assert binary, "haproxy (Debian package haproxy) is needed: .ci/run installs it"
    given = haproxy_environment() if environment is None else environment
    unset = set(haproxy_environment()) - set(given)
    env = {name: value for name, value in os.environ.items() if name not in unset} | dict(given)
    command = [binary, "-c", "-f", str(config)]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


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


# --- the API's settings, read by HAProxy from the environment ------------------------------------


def test_every_variable_haproxy_reads_is_passed_with_the_apis_default() -> None:
    read = set(HAPROXY_VARIABLE.findall(directives()))
    given = haproxy_environment()

    assert read == set(given)
    assert read >= {"GRACEFUL_TIMEOUT", "BODY_TIMEOUT", "KEEP_ALIVE_TIMEOUT"}
    for variable, default in given.items():
        assert int(default) == app_default(variable), f"{variable}: compose's default is not the API's"


@pytest.mark.parametrize("variable", sorted(haproxy_environment()))
def test_haproxy_takes_its_timeouts_from_the_environment(variable: str) -> None:
    """Another whole number of seconds is taken, one HAProxy cannot read is refused, and none at all too."""
    given = haproxy_environment()
    unset = {name: value for name, value in given.items() if name != variable}

    assert haproxy_check(CONFIG, given | {variable: "45"}).returncode == 0
    assert haproxy_check(CONFIG, given | {variable: "soon"}).returncode != 0
    assert haproxy_check(CONFIG, unset).returncode != 0


# --- the network HAProxy and the replicas share ---------------------------------------------------


def test_the_replicas_network_is_one_prefix_with_haproxy_outside_the_replicas_range() -> None:
    parsed = replicas_file()
    addresses = parsed["x-replicas-network"]
    built = {name: ON_THE_NETWORK.fullmatch(value) for name, value in addresses.items()}
    assert all(built.values()), addresses
    (default,) = {match[1] for match in built.values() if match}
    resolved = {name: f"{default}{match[2]}" for name, match in built.items() if match}
    subnet, replicas = ipaddress.IPv4Network(resolved["subnet"]), ipaddress.IPv4Network(resolved["replicas"])
    haproxy = ipaddress.IPv4Address(resolved["haproxy"])
    (ipam,) = parsed["networks"]["replicas"]["ipam"]["config"]

    assert subnet.prefixlen == 24
    assert replicas.subnet_of(subnet)
    assert haproxy in subnet and haproxy not in replicas
    # The anchors are used where Docker and the API read them: each address is written once.
    assert ipam == {"subnet": addresses["subnet"], "ip_range": addresses["replicas"]}
    assert parsed["services"]["haproxy"]["networks"]["replicas"]["ipv4_address"] == addresses["haproxy"]
    assert parsed["services"]["api"]["environment"]["FORWARDED_ALLOW_IPS"] == addresses["haproxy"]
    assert REPLICAS.read_text().count("REPLICAS_NETWORK:-") == len(addresses)
