"""A container of a Kubernetes pod spec run with `docker run`, as the kubelet would start it (tests/test_kubernetes.py).

No cluster is needed to see that the manifests' containers start and serve as declared: each setting of the pod
and its container has a `docker run` equivalent, read here from the parsed YAML.

- Cluster: what the manifests name and a cluster would hold (claims as host folders, Secrets, ConfigMaps).
- docker_run_arguments: `docker run`'s options and command for one container of one pod.
- running: that container started detached until its readiness probe answers 200, then removed.
- port_number, probes: a container spec's ports and HTTP probes, read as the kubelet reads them.

The equivalences: runAsUser/runAsGroup as --user, fsGroup as --group-add, readOnlyRootFilesystem as --read-only,
allowPrivilegeEscalation: false as no-new-privileges, dropped capabilities as --cap-drop, the memory and CPU limits
as --memory and --cpus, envFrom's ConfigMaps then env (a Secret's value looked up in the Cluster) as --env, a claim
as its host folder mounted at its path (read-only when the mount or the claim says so), an emptyDir as a tmpfs of
its size limit, each container port published on a free loopback port. RuntimeDefault seccomp is Docker's default
profile; any other has no equivalent and fails the run.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.helpers import wait_for
from tests.stack import docker

PROBE_KINDS = ("startupProbe", "livenessProbe", "readinessProbe")
# How long a started container may take to answer its readiness probe: a cold start imports scikit-learn.
READY_SECONDS = 120


@dataclass(frozen=True)
class Cluster:
    """What the manifests refer to by name, as a cluster would hold it: claims as host folders, Secrets, ConfigMaps."""

    claims: Mapping[str, Path]
    secrets: Mapping[str, Mapping[str, str]]
    config_maps: Mapping[str, Mapping[str, str]]


# --- a container spec, read as the kubelet reads it ----------------------------------------------


def port_number(container: Mapping[str, Any], port: int | str) -> int:
    """A probe's or a Service's port, by number or by the container port's name."""
    numbers = {entry["name"]: entry["containerPort"] for entry in container["ports"]}
    number = port if isinstance(port, int) else numbers[port]
    assert number in numbers.values(), f"port {port} is not one the container declares"
    return int(number)


def probes(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The httpGet of each probe the container declares, by kind (startupProbe, livenessProbe, readinessProbe)."""
    return {kind: container[kind]["httpGet"] for kind in PROBE_KINDS if kind in container}


# --- docker run's arguments ----------------------------------------------------------------------


def docker_run_arguments(pod: Mapping[str, Any], container: Mapping[str, Any], cluster: Cluster) -> list[str]:
    """`docker run`'s options and command for the container as the kubelet would start it in this pod."""
    options = security_options({**pod.get("securityContext", {}), **container["securityContext"]})
    limits = container["resources"]["limits"]
    options += ["--memory", docker_bytes(limits["memory"]), "--cpus", str(cpus(limits["cpu"]))]
    for name, value in environment(container, cluster).items():
        options += ["--env", f"{name}={value}"]
    for mount in container.get("volumeMounts", []):
        options += volume_options(pod, mount, cluster)
    for port in container.get("ports", []):
        options += ["--publish", f"127.0.0.1::{port['containerPort']}"]
    if "workingDir" in container:
        options += ["--workdir", container["workingDir"]]
    command = container.get("command", [])
    if command:
        options += ["--entrypoint", command[0]]
    return [*options, container["image"], *command[1:], *container.get("args", [])]


def security_options(security: Mapping[str, Any]) -> list[str]:
    """The pod's and the container's securityContext (the container's wins) as `docker run` options."""
    # Docker applies its default seccomp profile, which is what RuntimeDefault means under Docker's runtime.
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}, "no Docker equivalent for this profile"
    options = ["--user", f"{security['runAsUser']}:{security['runAsGroup']}"]
    if "fsGroup" in security:
        options += ["--group-add", str(security["fsGroup"])]
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    return options + [f"--cap-drop={capability}" for capability in security["capabilities"]["drop"]]


def environment(container: Mapping[str, Any], cluster: Cluster) -> dict[str, str]:
    """envFrom's ConfigMaps, then env, which wins, as in a pod."""
    values: dict[str, str] = {}
    for source in container.get("envFrom", []):
        values |= cluster.config_maps[source["configMapRef"]["name"]]
    for variable in container.get("env", []):
        if "value" in variable:
            values[variable["name"]] = variable["value"]
        else:
            reference = variable["valueFrom"]["secretKeyRef"]
            values[variable["name"]] = cluster.secrets[reference["name"]][reference["key"]]
    return values


def volume_options(pod: Mapping[str, Any], mount: Mapping[str, Any], cluster: Cluster) -> list[str]:
    """One volumeMount: an emptyDir as a tmpfs, a claim as its host folder."""
    (volume,) = [volume for volume in pod["volumes"] if volume["name"] == mount["name"]]
    if "emptyDir" in volume:
        return ["--tmpfs", f"{mount['mountPath']}:size={docker_bytes(volume['emptyDir']['sizeLimit'])}"]
    claim = volume["persistentVolumeClaim"]
    read_only = mount.get("readOnly") or claim.get("readOnly")
    return ["--volume", f"{cluster.claims[claim['claimName']]}:{mount['mountPath']}{':ro' if read_only else ''}"]


def docker_bytes(quantity: str) -> str:
    """A Kubernetes binary quantity (512Mi) in Docker's notation (512m: Docker's units are binary too)."""
    binary = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity)
    assert binary, f"{quantity} is not a quantity in Ki, Mi or Gi"
    return f"{binary[1]}{binary[2][0].lower()}"


def cpus(quantity: str) -> float:
    """A Kubernetes CPU quantity (250m, "1") as Docker's --cpus."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def open_to_the_pods_group(folder: Path, group: int) -> None:
    """A fresh volume as fsGroup leaves it: the pod's group may write it. Without root, open to all instead."""
    if os.geteuid() == 0:
        os.chown(folder, 0, group)
        folder.chmod(0o2775)
    else:
        folder.chmod(0o777)


# --- a served container, started and removed -----------------------------------------------------


@dataclass(frozen=True)
class Running:
    kind: str  # the manifest's kind that declares the container
    container_id: str
    spec: Mapping[str, Any]

    def url(self, port: int | str) -> str:
        """The loopback address the container's port (by number or name) is published on."""
        number = port_number(self.spec, port)
        address = docker("port", self.container_id, f"{number}/tcp").splitlines()[0]
        return f"http://{address}"

    def probe_url(self, kind: str) -> str:
        probe = probes(self.spec)[kind]
        return f"{self.url(probe['port'])}{probe['path']}"

    def logs(self) -> str:
        done = subprocess.run(["docker", "logs", self.container_id], capture_output=True, text=True, timeout=60)
        return (done.stdout + done.stderr)[-3000:]


@contextmanager
def running(kind: str, pod: Mapping[str, Any], container: Mapping[str, Any], cluster: Cluster) -> Iterator[Running]:
    """The container, started detached, until its readiness probe answers 200; then removed.

    Its log must hold no traceback once the test is done with it.
    """
    started = Running(
        kind, docker("run", "--detach", *docker_run_arguments(pod, container, cluster)).strip(), container
    )
    try:
        wait_until_ready(started)
        yield started
        assert "Traceback" not in started.logs(), started.logs()
    finally:
        subprocess.run(["docker", "rm", "--force", started.container_id], capture_output=True, timeout=120)


def wait_until_ready(started: Running) -> None:
    def ready() -> bool:
        state = docker("inspect", "--format", "{{.State.Status}}", started.container_id).strip()
        assert state == "running", f"the container stopped ({state}): {started.logs()}"
        try:
            return httpx.get(started.probe_url("readinessProbe"), timeout=5).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, READY_SECONDS, lambda: f"the readiness probe: {started.logs()}", interval=0.5)
