"""compose/kubernetes/: the Kubernetes and KServe manifests, checked against their kinds' schemas and run as declared.

Offline (`make test`): every document against the schema of its kind, the core kinds against Kubernetes
KUBERNETES_VERSION's own (kubernetes-validate, strict), the KServe kinds against the schemas of KServe
KSERVE_RELEASE's CRDs, vendored in compose/kubernetes/schemas/; a broken copy of each document fails the same
check, and a route's InferenceGraph what KServe's admission webhook would refuse.
With Docker (`make test-compose`): the containers the manifests declare run as the kubelet would run them.
"""

from __future__ import annotations

import copy
import json
import secrets
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import kubernetes_validate
import pytest
import yaml
from penguins import MODEL_NAMES
from referencing import Registry, Resource

from app.config import ServerSettings, Settings
from app.features import FEATURES
from tests.helpers import RECORD, ROOT
from tests.kubernetes_run import (
    PROBE_KINDS,
    Cluster,
    Running,
    docker_run_arguments,
    open_to_the_pods_group,
    port_number,
    probes,
    running,
)
from tests.stack import temporary_project

MANIFESTS = ROOT / "compose" / "kubernetes"
# The Kubernetes release the manifests must fit: the one KServe KSERVE_RELEASE is built against (k8s.io/api v0.34).
KUBERNETES_VERSION = "1.34"
KSERVE_RELEASE = "v0.20.0"
KSERVE_CRDS = MANIFESTS / "schemas" / f"kserve-{KSERVE_RELEASE}"
KSERVE_GROUP = "serving.kserve.io"
# KServe's conventions for a serving runtime: its container's name, HTTP port and model folder.
KSERVE_CONTAINER, KSERVE_HTTP_PORT, KSERVE_MODEL_DIR = "kserve-container", 8080, "/mnt/models"
# The InferenceService `penguins` over the whole models folder; the route of models/routes.json as an
# InferenceGraph over one InferenceService per variant; the same `penguins` with a canary (compose/README.md).
SERVICE_FILE, GRAPH_FILE = "kserve/inferenceservice.yaml", "kserve/routes/inferencegraph.yaml"
CANARY_FILE = "kserve/routes/canary.yaml"
# The variable KServe reads for the model name in the URL an InferenceGraph step posts to (GetModelName).
GRAPH_MODEL_NAME = "MLSERVER_MODEL_NAME"
# The Secret compose/README.md tells how to create: this repository ships none.
TOKEN_SECRET, TOKEN_KEY = "penguins-api-token", "API_TOKEN"
CAPTURE_SECRET, CAPTURE_KEY = "penguins-capture", "CAPTURE_URL"
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# The keywords of a CRD's schema that this check applies, as JSON Schema 2020-12 (they mean the same there as in
# OpenAPI v3.0), and those it leaves to the API server: defaults, formats, and how an object is stored (list and
# map kinds, int-or-string, pruning). A keyword in neither (a CEL rule, say) would be ignored without a word.
CHECKED_KEYWORDS = {"type", "properties", "items", "additionalProperties", "required", "enum", "pattern", "minimum",
                    "maximum", "minLength", "maxLength", "minItems", "anyOf"}  # fmt: skip
LEFT_TO_THE_API_SERVER = {"default", "format", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
                          "x-kubernetes-map-type", "x-kubernetes-int-or-string",
                          "x-kubernetes-preserve-unknown-fields"}  # fmt: skip
SCHEMA_LISTS = ("anyOf", "allOf", "oneOf")
ABSENT = object()  # a field a broken copy leaves out


# --- the manifests -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Document:
    path: Path
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    def __str__(self) -> str:
        return f"{self.path.relative_to(MANIFESTS)}:{self.kind}/{self.name}"


@cache
def documents() -> tuple[Document, ...]:
    """Every document of every manifest, parsed once (never change one: copy it)."""
    folders = ("*.yaml", "kserve/*.yaml", "kserve/routes/*.yaml")
    paths = [path for folder in folders for path in sorted(MANIFESTS.glob(folder))]
    return tuple(Document(path, body) for path in paths for body in yaml.safe_load_all(path.read_text()) if body)


def the(kind: str, file: str | None = None) -> dict[str, Any]:
    """The one document of that kind (in that file of compose/kubernetes/, when given)."""
    (found,) = [d.body for d in documents() if d.kind == kind and file in (None, str(d.path.relative_to(MANIFESTS)))]
    return found


def in_file(file: str, kind: str) -> list[dict[str, Any]]:
    return [d.body for d in documents() if d.kind == kind and d.path == MANIFESTS / file]


def service() -> dict[str, Any]:
    """The InferenceService `penguins` as kserve/ applies it (canary.yaml is the same one with a canary)."""
    return the("InferenceService", SERVICE_FILE)


def pod_spec(kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = the(kind)["spec"]["template"]["spec"]
    return spec


def runtime_spec() -> dict[str, Any]:
    """The ClusterServingRuntime's spec, which holds its pod's containers and volumes as a pod spec does."""
    spec: dict[str, Any] = the("ClusterServingRuntime")["spec"]
    return spec


def only_container(pod: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return dict(container)


def claim_names(pod: Mapping[str, Any]) -> set[str]:
    return {
        volume["persistentVolumeClaim"]["claimName"] for volume in pod["volumes"] if "persistentVolumeClaim" in volume
    }


def mount_path(pod: Mapping[str, Any], container: Mapping[str, Any], claim: str) -> str:
    (volume,) = [v["name"] for v in pod["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == claim]
    (path,) = [mount["mountPath"] for mount in container["volumeMounts"] if mount["name"] == volume]
    return str(path)


def storage_claim() -> str:
    """The claim the InferenceService's pvc://<claim>[/path] storageUri names."""
    storage_uri = str(service()["spec"]["predictor"]["model"]["storageUri"])
    assert storage_uri.startswith("pvc://"), storage_uri
    return storage_uri.removeprefix("pvc://").split("/")[0]


def literal_env(container: Mapping[str, Any]) -> dict[str, str]:
    return {variable["name"]: variable["value"] for variable in container.get("env", []) if "value" in variable}


# --- the check: each document against its kind's schema ------------------------------------------


def validate(body: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError when the document does not fit its kind's schema; unknown fields included."""
    if is_kserve(body["apiVersion"]):
        kserve_validator(body["apiVersion"], body["kind"]).validate(body)
    else:
        kubernetes_validate.validate(dict(body), KUBERNETES_VERSION, strict=True)


@cache
def kserve_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = refusing_unknown_fields(kserve_schema(api_version, kind))
    # The API server checks a custom resource's metadata as it checks every object's.
    schema["properties"]["metadata"] = {"$ref": OBJECT_META}
    definitions = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}.0-local-strict/_definitions.json", KUBERNETES_VERSION
    )
    registry: Registry[Any] = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator(schema, registry=registry)


def kserve_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The openAPIV3Schema of the vendored CRD that defines this kind at this version."""
    group, _, version = api_version.partition("/")
    for path in KSERVE_CRDS.glob("*.json"):
        crd = json.loads(path.read_text())
        if (crd["spec"]["group"], crd["spec"]["names"]["kind"]) == (group, kind):
            (served,) = [entry for entry in crd["spec"]["versions"] if entry["name"] == version and entry["served"]]
            schema: dict[str, Any] = served["schema"]["openAPIV3Schema"]
            return schema
    raise AssertionError(f"no vendored CRD of KServe {KSERVE_RELEASE} defines {kind} ({api_version})")


def refusing_unknown_fields(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The schema with `additionalProperties: false` on every object that neither lists them nor keeps unknown fields.

    A CRD's schema is structural: the API server drops every field an object does not list, unless it says
    x-kubernetes-preserve-unknown-fields, and kubectl's default field validation (Strict) refuses such a field
    instead. JSON Schema lets unlisted fields pass unless told otherwise: this tells it, so a misspelt field fails
    here as it fails on a cluster.
    """
    strict = dict(schema)
    if "properties" in schema:
        strict["properties"] = {name: refusing_unknown_fields(value) for name, value in schema["properties"].items()}
    for keyword in ("items", "additionalProperties"):
        if isinstance(schema.get(keyword), Mapping):
            strict[keyword] = refusing_unknown_fields(schema[keyword])
    for keyword in SCHEMA_LISTS:
        if keyword in schema:
            strict[keyword] = [refusing_unknown_fields(branch) for branch in schema[keyword]]
    keeps_unknown = "additionalProperties" in schema or schema.get("x-kubernetes-preserve-unknown-fields")
    if schema.get("type") == "object" and not keeps_unknown:
        strict["additionalProperties"] = False
    return strict


def keywords(schema: Mapping[str, Any]) -> set[str]:
    """Every keyword used anywhere in the schema."""
    found = set(schema)
    children = [*schema.get("properties", {}).values()]
    children += [schema[key] for key in ("items", "additionalProperties") if isinstance(schema.get(key), Mapping)]
    children += [branch for key in SCHEMA_LISTS for branch in schema.get(key, [])]
    return found.union(*(keywords(child) for child in children))


@pytest.mark.parametrize("document", [pytest.param(d, id=str(d)) for d in documents()])
def test_every_document_fits_the_schema_of_its_kind(document: Document) -> None:
    validate(document.body)


def is_kserve(api_version: str) -> bool:
    return api_version.startswith(f"{KSERVE_GROUP}/")


def test_the_vendored_crd_schemas_use_no_keyword_the_check_does_not_know() -> None:
    kserve = [(d.body["apiVersion"], d.kind) for d in documents() if is_kserve(d.body["apiVersion"])]
    used = set().union(*(keywords(kserve_schema(api_version, kind)) for api_version, kind in kserve))

    assert used <= CHECKED_KEYWORDS | LEFT_TO_THE_API_SERVER


# --- broken copies fail the same check ------------------------------------------------------------

# For each kind, a field spelt wrong (path to it, the misspelling) and a field given a value of the wrong type.
MISSPELT: dict[str, tuple[tuple[str | int, ...], str]] = {
    "PersistentVolumeClaim": (("spec", "accessModes"), "accesModes"),
    "Job": (("spec", "template", "spec", "restartPolicy"), "restartpolicy"),
    "ConfigMap": (("data",), "datas"),
    "Deployment": (("spec", "template", "spec", "containers", 0, "readinessProbe"), "readinesProbe"),
    "Service": (("spec", "selector"), "selectors"),
    "HorizontalPodAutoscaler": (("spec", "metrics"), "metric"),
    "PodDisruptionBudget": (("spec", "minAvailable"), "minAvailible"),
    "ClusterServingRuntime": (("spec", "containers", 0, "securityContext", "readOnlyRootFilesystem"),
                              "readOnlyRootFileSystem"),
    "InferenceService": (("spec", "predictor", "model", "storageUri"), "storageURI"),
    "InferenceGraph": (("spec", "nodes", "root", "steps", 0, "serviceName"), "servicename"),
}  # fmt: skip
WRONG_TYPE: dict[str, tuple[tuple[str | int, ...], Any]] = {
    "PersistentVolumeClaim": (("spec", "accessModes"), "ReadWriteMany"),
    "Job": (("spec", "backoffLimit"), "two"),
    "ConfigMap": (("data", "MAX_RECORDS"), 10000),
    "Deployment": (("spec", "template", "spec", "terminationGracePeriodSeconds"), "thirty"),
    "Service": (("spec", "ports"), {"port": 80}),
    "HorizontalPodAutoscaler": (("spec", "minReplicas"), "2"),
    "PodDisruptionBudget": (("spec", "selector"), "penguins-api"),
    "ClusterServingRuntime": (("spec", "protocolVersions"), "v2"),
    "InferenceService": (("spec", "predictor", "minReplicas"), "two"),
    "InferenceGraph": (("spec", "nodes", "root", "steps", 0, "weight"), "90"),
}


def broken_copy(body: Mapping[str, Any], path: tuple[str | int, ...], key: str | None = None, value: Any = None) -> Any:
    """A deep copy of the document with the field at path renamed to key, or else given value."""
    broken = copy.deepcopy(dict(body))
    *parents, last = path
    holder: Any = broken
    for step in parents:
        holder = holder[step]
    assert last in holder, f"{path} is not in the document: the broken copy would break nothing"
    if key is None:
        holder[last] = value
    else:
        holder[key] = holder.pop(last)
    return broken


def check_error(body: Mapping[str, Any]) -> jsonschema.ValidationError:
    with pytest.raises(jsonschema.ValidationError) as raised:
        validate(body)
    return raised.value


def of_the_kinds(table: Mapping[str, Any]) -> list[Any]:
    """Every document whose kind the table breaks: the InferenceServices of the routes and the canary too."""
    return [pytest.param(d, id=str(d)) for d in documents() if d.kind in table]


@pytest.mark.parametrize("document", of_the_kinds(MISSPELT))
def test_a_misspelt_field_fails_the_check(document: Document) -> None:
    path, misspelling = MISSPELT[document.kind]

    error = check_error(broken_copy(document.body, path, key=misspelling))

    assert f"'{misspelling}' was unexpected" in error.message, error.message


@pytest.mark.parametrize("document", of_the_kinds(WRONG_TYPE))
def test_a_field_of_the_wrong_type_fails_the_check(document: Document) -> None:
    path, value = WRONG_TYPE[document.kind]

    error = check_error(broken_copy(document.body, path, value=value))

    assert "is not of type" in error.message, error.message
    assert list(error.absolute_path) == list(path), error.message


# What else the vendored schemas bound, beyond unknown fields and types: (file, kind, path, value, message).
BEYOND_TYPES = [
    pytest.param(GRAPH_FILE, "InferenceGraph", ("spec", "nodes", "root", "routerType"), "Split", "is not one of",
                 id="a router type KServe does not know"),
    pytest.param(CANARY_FILE, "InferenceService", ("spec", "canary", 0, "trafficPercent"), 101,
                 "is greater than the maximum of 100", id="a canary above 100 %"),
    pytest.param(CANARY_FILE, "InferenceService", ("spec", "canary", 0, "trafficPercent"), ABSENT,
                 "'trafficPercent' is a required property", id="a canary without its share"),
]  # fmt: skip


def edited(body: Mapping[str, Any], path: tuple[str | int, ...], value: Any) -> Any:
    """A deep copy of the document with the field at path set to value, or removed when value is ABSENT."""
    changed = copy.deepcopy(dict(body))
    *parents, last = path
    holder: Any = changed
    for step in parents:
        holder = holder[step]
    if value is ABSENT:
        del holder[last]
    else:
        holder[last] = value
    return changed


@pytest.mark.parametrize(("file", "kind", "path", "value", "message"), BEYOND_TYPES)
def test_a_value_the_schema_bounds_fails_the_check(
    file: str, kind: str, path: tuple[str | int, ...], value: Any, message: str
) -> None:
    error = check_error(edited(the(kind, file), path, value))

    assert message in error.message, error.message


def test_every_kind_in_the_manifests_has_its_broken_copies() -> None:
    kinds = {document.kind for document in documents()}

    assert kinds == set(MISSPELT) == set(WRONG_TYPE)


# --- the manifests agree with each other, with KServe and with the app ----------------------------


def test_the_job_the_deployment_and_the_inferenceservice_share_the_models_claim() -> None:
    claim = the("PersistentVolumeClaim")["metadata"]["name"]

    assert claim_names(pod_spec("Job")) == claim_names(pod_spec("Deployment")) == {claim}
    assert storage_claim() == claim
    assert the("PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_models_dir_is_where_the_job_and_the_deployment_mount_the_claim() -> None:
    claim = the("PersistentVolumeClaim")["metadata"]["name"]
    job, deployment = pod_spec("Job"), pod_spec("Deployment")

    assert literal_env(only_container(job))["MODELS_DIR"] == mount_path(job, only_container(job), claim)
    assert literal_env(only_container(deployment))["MODELS_DIR"] == mount_path(
        deployment, only_container(deployment), claim
    )


def test_the_service_the_autoscaler_and_the_disruption_budget_reach_the_deployments_pods() -> None:
    deployment = the("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service, autoscaler = the("Service")["spec"], the("HorizontalPodAutoscaler")["spec"]
    container = only_container(pod_spec("Deployment"))

    assert service["selector"].items() <= labels.items()
    assert {port_number(container, port["targetPort"]) for port in service["ports"]} == {
        port["containerPort"] for port in container["ports"]
    }
    assert the("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert (autoscaler["scaleTargetRef"]["kind"], autoscaler["scaleTargetRef"]["name"]) == (
        "Deployment",
        deployment["metadata"]["name"],
    )


def test_the_autoscaler_alone_sets_the_replica_count_and_keeps_two_through_disruptions() -> None:
    minimum = the("HorizontalPodAutoscaler")["spec"]["minReplicas"]

    # A count in the Deployment would undo the autoscaler's at every `kubectl apply`.
    assert "replicas" not in the("Deployment")["spec"]
    assert minimum == 2
    assert the("PodDisruptionBudget")["spec"]["minAvailable"] < minimum


def test_the_probes_and_the_scrape_annotations_name_the_port_the_api_listens_on() -> None:
    deployment = the("Deployment")["spec"]["template"]
    container = only_container(deployment["spec"])
    listening = int(literal_env(container)["PORT"])

    assert {port_number(container, probe["port"]) for probe in probes(container).values()} == {listening}
    assert set(probes(container)) == {"startupProbe", "livenessProbe", "readinessProbe"}
    assert int(deployment["metadata"]["annotations"]["prometheus.io/port"]) == listening


def probes_but_their_port(container: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each declared probe whole (its timing included), its httpGet without the port the container listens on."""
    return {
        kind: {**container[kind], "httpGet": {k: v for k, v in container[kind]["httpGet"].items() if k != "port"}}
        for kind in PROBE_KINDS
        if kind in container
    }


def test_the_runtime_probes_its_container_as_the_deployment_does() -> None:
    deployment = probes_but_their_port(only_container(pod_spec("Deployment")))
    startup = deployment["startupProbe"]

    assert probes_but_their_port(only_container(runtime_spec())) == deployment
    assert set(deployment) == set(PROBE_KINDS)
    # The comment above the Deployment's startupProbe: a first start may take up to a minute.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60


def test_the_runtime_follows_kserves_conventions() -> None:
    runtime = runtime_spec()
    container = only_container(runtime)

    assert container["name"] == KSERVE_CONTAINER
    assert literal_env(container)["MODELS_DIR"] == KSERVE_MODEL_DIR
    assert int(literal_env(container)["PORT"]) == port_number(container, KSERVE_HTTP_PORT)
    assert {port_number(container, probe["port"]) for probe in probes(container).values()} == {KSERVE_HTTP_PORT}
    assert int(runtime["annotations"]["prometheus.kserve.io/port"]) == KSERVE_HTTP_PORT
    assert runtime["protocolVersions"] == ["v2"]


def test_the_inferenceservice_asks_for_what_the_runtime_offers() -> None:
    runtime = the("ClusterServingRuntime")
    predictor = service()["spec"]["predictor"]
    model = predictor["model"]

    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"] in [
        {"name": entry["name"], "version": entry["version"]} for entry in runtime["spec"]["supportedModelFormats"]
    ]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert int(predictor["annotations"]["prometheus.io/port"]) == KSERVE_HTTP_PORT


def without_the_model_name(isvc: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """The InferenceService's annotations and spec, its model's env apart (the spec's copy has none)."""
    spec = copy.deepcopy(dict(isvc["spec"]))
    env = spec["predictor"]["model"].pop("env", [])
    return dict(isvc["metadata"].get("annotations", {})), spec, env


def test_each_route_variant_is_the_inferenceservice_serving_one_model_file() -> None:
    annotations, spec, _ = without_the_model_name(service())

    for variant in in_file(GRAPH_FILE, "InferenceService"):
        its_annotations, its_spec, env = without_the_model_name(variant)
        (model,) = [variable["value"] for variable in env if variable["name"] == GRAPH_MODEL_NAME]
        assert (its_annotations, its_spec) == (annotations, spec)
        assert model in MODEL_NAMES
        assert variant["metadata"]["name"] == f"penguins-{model.replace('_', '-')}"


def webhook_faults(graph: Mapping[str, Any]) -> list[str]:
    """What KServe v0.20.0's admission webhook refuses in a graph and no schema does (inference_graph_validation.go)."""
    faults = [] if "root" in graph["spec"]["nodes"] else ["no root node"]
    for name, node in graph["spec"]["nodes"].items():
        steps = node.get("steps", [])
        targets = [sum(key in step for key in ("nodeName", "serviceName", "serviceUrl")) for step in steps]
        faults += [f"{name} step {i}: {count} targets, not 1" for i, count in enumerate(targets) if count != 1]
        if node["routerType"] == "Splitter":
            weights = [step.get("weight") for step in steps]
            if None in weights or sum(weights) != 100:
                faults.append(f"{name}: Splitter weights {weights} do not sum to 100")
    return faults


def test_the_graph_passes_kserves_webhook_and_names_the_route_variants() -> None:
    graph = the("InferenceGraph")
    (root,) = graph["spec"]["nodes"].values()
    variants = {variant["metadata"]["name"] for variant in in_file(GRAPH_FILE, "InferenceService")}

    assert webhook_faults(graph) == []
    assert root["routerType"] == "Splitter"
    assert {step["serviceName"] for step in root["steps"]} == variants
    assert graph["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Standard"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param(("spec", "nodes", "root", "steps", 0), {"weight": 90}, id="a step without a target"),
        pytest.param(("spec", "nodes", "root", "steps", 1, "weight"), 20, id="weights summing to 110"),
        pytest.param(("spec", "nodes", "root", "steps", 0, "serviceUrl"), "http://elsewhere", id="two targets"),
    ],
)
def test_a_graph_the_webhook_would_refuse_fails_its_check(path: tuple[str | int, ...], value: Any) -> None:
    assert webhook_faults(edited(the("InferenceGraph"), path, value))


def test_the_canary_is_the_inferenceservice_with_a_canary_of_the_same_runtime_and_claim() -> None:
    canary = copy.deepcopy(the("InferenceService", CANARY_FILE))
    (candidate,) = canary["spec"].pop("canary")
    model, stable = candidate["predictor"]["model"], service()["spec"]["predictor"]["model"]

    assert canary == service()
    assert 0 < candidate["trafficPercent"] < 100
    assert model["modelFormat"] == stable["modelFormat"]
    assert model["storageUri"].startswith(f"{stable['storageUri']}/")
    assert model["name"] == KSERVE_CONTAINER


def locked_down_containers() -> list[Any]:
    pods = [("Job", pod_spec("Job")), ("Deployment", pod_spec("Deployment")), ("ClusterServingRuntime", runtime_spec())]
    return [pytest.param(pod, only_container(pod), id=kind) for kind, pod in pods]


@pytest.mark.parametrize(("pod", "container"), locked_down_containers())
def test_every_container_runs_locked_down(pod: dict[str, Any], container: dict[str, Any]) -> None:
    security = {**pod.get("securityContext", {}), **container["securityContext"]}
    scratch = [mount["name"] for mount in container["volumeMounts"] if mount["mountPath"] == "/tmp"]

    assert security["runAsNonRoot"] is True and security["runAsUser"] > 0
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert set(container["resources"]) == {"requests", "limits"}
    assert [volume["name"] for volume in pod["volumes"] if "emptyDir" in volume] == scratch


@pytest.mark.parametrize("kind", ["Deployment", "ClusterServingRuntime"])
def test_the_token_comes_from_the_secret_the_readme_tells_how_to_create(kind: str) -> None:
    container = only_container(runtime_spec() if kind == "ClusterServingRuntime" else pod_spec(kind))
    (token,) = [variable for variable in container["env"] if variable["name"] == "API_TOKEN"]
    readme = (ROOT / "compose" / "README.md").read_text()

    assert token["valueFrom"]["secretKeyRef"] == {"name": TOKEN_SECRET, "key": TOKEN_KEY}
    assert f"kubectl create secret generic {TOKEN_SECRET} --from-literal={TOKEN_KEY}=" in readme
    assert "Secret" not in {document.kind for document in documents()}


@pytest.mark.parametrize("kind", ["Deployment", "ClusterServingRuntime"])
def test_the_capture_store_comes_from_the_secret_the_readme_tells_how_to_create(kind: str) -> None:
    container = only_container(runtime_spec() if kind == "ClusterServingRuntime" else pod_spec(kind))
    (store,) = [variable for variable in container["env"] if variable["name"] == "CAPTURE_URL"]
    readme = (ROOT / "compose" / "README.md").read_text()

    # Required (no `optional`): a pod without the store would keep its captures to itself, in its /tmp.
    assert store["valueFrom"]["secretKeyRef"] == {"name": CAPTURE_SECRET, "key": CAPTURE_KEY}
    assert f"kubectl create secret generic {CAPTURE_SECRET} --from-literal={CAPTURE_KEY}=postgresql://" in readme
    assert "CAPTURE_URL" not in the("ConfigMap")["data"]  # a password belongs in the Secret alone


def test_a_capture_secret_reference_of_the_wrong_type_fails_the_check() -> None:
    env = pod_spec("Deployment")["containers"][0]["env"]
    index = next(i for i, variable in enumerate(env) if variable["name"] == "CAPTURE_URL")
    path = ("spec", "template", "spec", "containers", 0, "env", index, "valueFrom", "secretKeyRef", "key")

    error = check_error(broken_copy(the("Deployment"), path, value=["CAPTURE_URL"]))

    assert "is not of type" in error.message, error.message


def test_the_configmap_holds_settings_the_app_takes() -> None:
    data = the("ConfigMap")["data"]
    assert set(data) <= {name.upper() for kind in (Settings, ServerSettings) for name in kind.model_fields}
    # A value the app would refuse at start raises ConfigError here, naming the setting.
    Settings.from_env(data)
    ServerSettings.from_env(data)


# --- the containers, run as declared (make test-compose; the docker run emulation: tests/kubernetes_run.py) ---


def kserve_pod() -> tuple[dict[str, Any], dict[str, Any]]:
    """The runtime's pod as KServe makes it for the InferenceService: the claim of its pvc:// storageUri mounted
    at the model folder, read-only (the annotation storage.kserve.io/readonly defaults to true)."""
    claim = storage_claim()
    runtime, container = runtime_spec(), only_container(runtime_spec())
    source = {"name": "kserve-pvc-source", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
    mount = {"name": source["name"], "mountPath": KSERVE_MODEL_DIR, "readOnly": True}
    return {"volumes": [*runtime["volumes"], source]}, {
        **container,
        "volumeMounts": [*container["volumeMounts"], mount],
    }


def served_pod(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    if kind == "ClusterServingRuntime":
        return kserve_pod()
    return pod_spec(kind), only_container(pod_spec(kind))


def scrape_target(kind: str) -> tuple[int, str]:
    """The port and path Prometheus scrapes, from the pods' prometheus.io annotations."""
    if kind == "ClusterServingRuntime":
        annotations = service()["spec"]["predictor"]["annotations"]
    else:
        annotations = the(kind)["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    return int(annotations["prometheus.io/port"]), str(annotations["prometheus.io/path"])


def one_record_v2() -> dict[str, Any]:
    kinds = {name: "BYTES" if isinstance(RECORD[name], str) else "FP64" for name in FEATURES}
    return {
        "inputs": [{"name": name, "shape": [1], "datatype": kinds[name], "data": [RECORD[name]]} for name in FEATURES]
    }


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """penguins-api:latest and penguins-jupyter:latest, the images the manifests name, built the project's way."""
    with temporary_project(tmp_path_factory.mktemp("kubernetes-images")) as project:
        project.make("build")
        yield


@pytest.fixture(scope="module")
def cluster(images: None, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    claim = tmp_path_factory.mktemp("claim")
    open_to_the_pods_group(claim, pod_spec("Job")["securityContext"]["fsGroup"])
    config_map = the("ConfigMap")
    return Cluster(
        claims={the("PersistentVolumeClaim")["metadata"]["name"]: claim},
        # The capture store's stand-in: a file in the pod's own /tmp (a cluster's Secret names PostgreSQL).
        secrets={
            TOKEN_SECRET: {TOKEN_KEY: secrets.token_hex(24)},
            CAPTURE_SECRET: {CAPTURE_KEY: "sqlite:////tmp/capture/capture.db"},
        },
        config_maps={config_map["metadata"]["name"]: config_map["data"]},
    )


@pytest.fixture(scope="module")
def trained(cluster: Cluster) -> subprocess.CompletedProcess[str]:
    """The Job's pod, once, without network: it trains from what its image holds."""
    job = pod_spec("Job")
    command = ["docker", "run", "--rm", "--network", "none", *docker_run_arguments(job, only_container(job), cluster)]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module", params=["Deployment", "ClusterServingRuntime"])
def served(
    request: pytest.FixtureRequest, trained: subprocess.CompletedProcess[str], cluster: Cluster
) -> Iterator[Running]:
    """The API container of the Deployment, then of the serving runtime, over the claim the Job trained into."""
    assert trained.returncode == 0, trained.stderr[-3000:]
    with running(request.param, *served_pod(request.param), cluster) as started:
        yield started


@pytest.mark.compose
@pytest.mark.timeout(1200)
def test_the_job_trains_every_model_into_the_claim_as_its_user_without_a_warning(
    trained: subprocess.CompletedProcess[str], cluster: Cluster
) -> None:
    (claim,) = cluster.claims.values()
    models = sorted(claim.glob("*.pkl"))
    user = pod_spec("Job")["securityContext"]["runAsUser"]

    assert trained.returncode == 0, trained.stderr[-3000:]
    assert not trained.stderr.strip(), trained.stderr[-3000:]
    assert [path.stem for path in models] == MODEL_NAMES
    assert {path.stat().st_uid for path in models} == {user}


@pytest.mark.compose
@pytest.mark.timeout(1200)
def test_the_declared_probes_answer_200_without_the_token(served: Running) -> None:
    answers = {kind: httpx.get(served.probe_url(kind), timeout=30).status_code for kind in probes(served.spec)}

    assert set(answers.values()) == {200}, answers


@pytest.mark.compose
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("model", MODEL_NAMES)
def test_a_v2_inference_answers_with_the_secrets_token_only(served: Running, cluster: Cluster, model: str) -> None:
    url = served.url(served.spec["ports"][0]["name"]) + f"/v2/models/{model}/infer"
    token = cluster.secrets[TOKEN_SECRET][TOKEN_KEY]

    refused = httpx.post(url, json=one_record_v2(), timeout=30)
    answered = httpx.post(url, json=one_record_v2(), headers={"Authorization": f"Bearer {token}"}, timeout=30)

    assert refused.status_code == 401
    assert answered.status_code == 200, answered.text
    assert answered.json()["model_name"] == model
    assert answered.json()["outputs"][0]["shape"][0] == 1


@pytest.mark.compose
@pytest.mark.timeout(1200)
def test_the_scrape_annotations_lead_to_the_metrics(served: Running, cluster: Cluster) -> None:
    port, path = scrape_target(served.kind)
    token = cluster.secrets[TOKEN_SECRET][TOKEN_KEY]

    response = httpx.get(served.url(port) + path, headers={"Authorization": f"Bearer {token}"}, timeout=30)

    assert response.status_code == 200
    assert "penguins_http_requests_total" in response.text
