"""app/registry.py: hot reload, loaded once, broken files contained, nothing outside MODELS_DIR unpickled."""

from __future__ import annotations

import os
import pickle
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import pytest
import sklearn
from starlette.testclient import TestClient

from app.errors import ModelOutsideFolder
from app.registry import Registry
from tests.helpers import RECORD


def replace_atomically(source: Path, target: Path) -> None:
    """As train.py writes: a dot-named temporary next to the target, then os.replace."""
    temporary = target.with_name(f".{target.stem}.test.tmp")
    shutil.copyfile(source, temporary)
    os.replace(temporary, target)


def predict(client: TestClient, model: str) -> tuple[int, dict[str, Any]]:
    response = client.post("/predict", params={"model": model}, json={"records": [RECORD]})
    return response.status_code, response.json()


# Hot reload


def test_a_file_added_while_running_is_served(client: TestClient, models_dir: Path) -> None:
    assert predict(client, "newcomer")[0] == 404
    replace_atomically(models_dir / "svc.pkl", models_dir / "newcomer.pkl")
    assert "newcomer.pkl" in client.get("/models").json()["modelos_disponibles"]
    status, body = predict(client, "newcomer")
    assert (status, body["model"], body["probabilities"]) == (200, "newcomer.pkl", None)


def test_a_file_replaced_atomically_is_reloaded(client: TestClient, models_dir: Path) -> None:
    assert predict(client, "random_forest")[1]["probabilities"] is not None
    replace_atomically(models_dir / "svc.pkl", models_dir / "random_forest.pkl")
    assert predict(client, "random_forest")[1]["probabilities"] is None
    assert client.get("/models/random_forest").json()["estimator"] == "SVC"


def test_a_file_rewritten_in_place_with_the_same_size_is_reloaded(client: TestClient, models_dir: Path) -> None:
    target = models_dir / "random_forest.pkl"
    assert predict(client, "random_forest")[0] == 200
    size = target.stat().st_size
    with target.open("r+b") as file:  # same inode, same size: only the mtime tells
        file.write(b"\0" * size)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    assert predict(client, "random_forest")[0] == 500


def test_a_deleted_file_is_evicted_and_answers_404(client: TestClient, models_dir: Path) -> None:
    assert predict(client, "svc")[0] == 200
    (models_dir / "svc.pkl").unlink()
    status, body = predict(client, "svc")
    assert status == 404
    assert body["detail"].endswith("available: logistic_regression.pkl, random_forest.pkl.")
    assert client.get("/models").json()["modelos_disponibles_total"] == 2


def test_a_cached_model_is_not_read_again(models_dir: Path) -> None:
    registry = Registry(models_dir)
    first = registry.get("svc")
    assert registry.get("svc") is first
    assert registry.cached("svc.pkl") is first


def test_concurrent_requests_for_a_new_file_load_it_once(models_dir: Path) -> None:
    registry = Registry(models_dir)
    barrier = threading.Barrier(8)
    loaded = []

    def load() -> None:
        barrier.wait()
        loaded.append(registry.get("random_forest"))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(loaded) == 8
    assert all(model is loaded[0] for model in loaded)  # one load, one object, shared


# Broken files: a 500 naming the file, for that model only


BROKEN = [
    pytest.param(b"", "the file is empty", id="empty"),
    pytest.param(b"this is not a pickle", "it cannot be unpickled (IndexError", id="not-a-pickle"),
    pytest.param(b"\x89PNG\r\n", "it cannot be unpickled (UnpicklingError", id="an-image"),
    pytest.param(pickle.dumps({"a": 1})[:-5], "it cannot be unpickled", id="truncated"),
    pytest.param(pickle.dumps([1, 2, 3]), "it holds a list, not a fitted model", id="pickle-of-a-list"),
    pytest.param(pickle.dumps({"weights": [1]}), "not a 'model' bundle", id="dict-without-model"),
]


@pytest.mark.parametrize(("content", "reason"), BROKEN)
def test_a_broken_file_is_a_500_naming_it(client: TestClient, models_dir: Path, content: bytes, reason: str) -> None:
    (models_dir / "broken.pkl").write_bytes(content)
    status, body = predict(client, "broken")
    assert status == 500
    assert str(body["detail"]).startswith("Model file broken.pkl cannot be loaded: ")
    assert reason in str(body["detail"])
    assert "Traceback" not in str(body["detail"])


def test_a_truncated_model_bundle_is_a_500(client: TestClient, models_dir: Path) -> None:
    content = (models_dir / "logistic_regression.pkl").read_bytes()
    (models_dir / "broken.pkl").write_bytes(content[: len(content) // 2])
    status, body = predict(client, "broken")
    assert status == 500
    assert str(body["detail"]).startswith("Model file broken.pkl cannot be loaded: ")


def test_a_broken_file_leaves_everything_else_working(client: TestClient, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"garbage")
    assert predict(client, "broken")[0] == 500
    assert client.get("/models/broken").status_code == 500
    assert predict(client, "svc")[0] == 200
    assert client.get("/health").json() == {"status": "ok", "models": 4}
    assert "broken.pkl" in client.get("/models").json()["modelos_disponibles"]


def test_the_traceback_of_a_broken_file_goes_to_the_log(
    client: TestClient, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (models_dir / "broken.pkl").write_bytes(b"garbage")
    predict(client, "broken")
    # Two lines: the load's failure (file, reason), then the failed request's, with the traceback.
    records = [record for record in caplog.records if "broken.pkl" in record.getMessage()]
    assert [record.levelname for record in records] == ["ERROR", "ERROR"]
    assert records[1].exc_info is not None


def test_a_fixed_file_is_served_again(client: TestClient, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"garbage")
    assert predict(client, "broken")[0] == 500
    replace_atomically(models_dir / "svc.pkl", models_dir / "broken.pkl")
    assert predict(client, "broken")[0] == 200


def test_a_named_broken_model_fails_compare(client: TestClient, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"")
    response = client.post("/predict/compare?models=svc,broken", json={"records": [RECORD]})
    assert response.status_code == 500
    assert response.json() == {"detail": "Model file broken.pkl cannot be loaded: the file is empty."}


def test_a_default_compare_skips_a_broken_model_and_says_so(client: TestClient, models_dir: Path) -> None:
    (models_dir / "broken.pkl").write_bytes(b"")
    response = client.post("/predict/compare", json={"records": [RECORD]})
    assert response.status_code == 200
    assert list(response.json()["results"]) == ["logistic_regression.pkl", "random_forest.pkl", "svc.pkl"]
    assert response.json()["skipped"] == {"broken.pkl": "Model file broken.pkl cannot be loaded: the file is empty."}


# The security boundary: nothing outside MODELS_DIR is ever unpickled


class Trap:
    """Unpickling this creates a marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.fixture
def outside(models_dir: Path) -> tuple[Path, Path]:
    """A real (trapped) pickle just outside the models folder, and the marker it would create."""
    marker = models_dir.parent / "unpickled"
    target = models_dir.parent / "outside.pkl"
    target.write_bytes(pickle.dumps(Trap(marker)))
    return target, marker


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("../outside", id="parent"),
        pytest.param("../outside.pkl", id="parent-with-suffix"),
        pytest.param("..%2Foutside", id="encoded-slash"),
        pytest.param("/absolute/outside", id="absolute"),
    ],
)
def test_a_pickle_just_outside_the_folder_is_never_loaded(
    client: TestClient, outside: tuple[Path, Path], name: str
) -> None:
    target, marker = outside
    name = name.replace("/absolute", str(target.parent))
    status, body = predict(client, name)
    assert status == 400
    assert "is not a plain file name" in str(body["detail"])
    assert client.get(f"/models/{name.replace('/', '%2F')}").status_code == 400
    assert not marker.exists()


def test_a_symlink_escaping_the_folder_is_refused(
    client: TestClient, models_dir: Path, outside: tuple[Path, Path]
) -> None:
    target, marker = outside
    (models_dir / "escape.pkl").symlink_to(target)
    status, body = predict(client, "escape")
    assert status == 400
    assert body == {"detail": "Model 'escape.pkl' is a link to a file outside the models folder; it is never loaded."}
    assert client.get("/models/escape").status_code == 400
    assert client.post("/predict/compare?models=escape", json={"records": [RECORD]}).status_code == 400
    assert "escape.pkl" not in client.get("/models").json()["modelos_disponibles"]
    assert not marker.exists()


def test_a_relative_symlink_escaping_the_folder_is_refused(models_dir: Path, outside: tuple[Path, Path]) -> None:
    target, marker = outside
    (models_dir / "escape.pkl").symlink_to(Path("..") / target.name)
    with pytest.raises(ModelOutsideFolder):
        Registry(models_dir).get("escape")
    assert not marker.exists()


def test_a_symlink_inside_the_folder_is_served(client: TestClient, models_dir: Path) -> None:
    (models_dir / "latest.pkl").symlink_to("svc.pkl")
    assert predict(client, "latest")[1]["model"] == "latest.pkl"
    assert "latest.pkl" in client.get("/models").json()["modelos_disponibles"]


def test_a_pickle_inside_the_folder_is_trusted(models_dir: Path, tmp_path: Path) -> None:
    # The other side of the boundary, documented: whoever writes into MODELS_DIR runs code in the API.
    marker = tmp_path / "unpickled-inside"
    joblib.dump(Trap(marker), models_dir / "inside.pkl")
    with pytest.raises(Exception, match="cannot be loaded"):
        Registry(models_dir).get("inside")
    assert marker.exists()


def test_a_dangling_symlink_is_404(client: TestClient, models_dir: Path) -> None:
    (models_dir / "dangling.pkl").symlink_to("gone.pkl")
    assert predict(client, "dangling")[0] == 404


def test_make_client_fixture_sees_settings(make_client: Callable[..., TestClient], models_dir: Path) -> None:
    assert make_client(models_dir).get("/health").status_code == 200


# Model files from another scikit-learn

# Another version of the same length: the pickle stays valid when its bytes are swapped in.
OTHER_SKLEARN = "0" + sklearn.__version__[1:]


def bundle_naming_version(source: Path, target: Path, version: str) -> None:
    bundle = joblib.load(source)
    bundle["metadata"]["sklearn_version"] = version
    joblib.dump(bundle, target)


def estimator_pickled_by(source: Path, target: Path, version: str) -> None:
    """A bare estimator whose pickled state says another scikit-learn wrote it (unpickling then warns)."""
    joblib.dump(joblib.load(source)["model"], target)
    content = target.read_bytes()
    assert content.count(sklearn.__version__.encode()) > 0
    target.write_bytes(content.replace(sklearn.__version__.encode(), version.encode()))


def test_a_bundle_from_another_sklearn_is_served_and_flagged(
    client: TestClient, models_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundle_naming_version(models_dir / "random_forest.pkl", models_dir / "old.pkl", "1.5.0")
    info = client.get("/models/old").json()
    assert info["sklearn_version_mismatch"] == {"trained_with": "1.5.0", "serving_with": sklearn.__version__}
    assert predict(client, "old")[0] == 200
    assert "old.pkl was pickled by scikit-learn 1.5.0" in caplog.text


def test_an_estimator_whose_pickle_says_another_sklearn_is_flagged(client: TestClient, models_dir: Path) -> None:
    estimator_pickled_by(models_dir / "logistic_regression.pkl", models_dir / "bare.pkl", OTHER_SKLEARN)
    info = client.get("/models/bare").json()
    assert (info["format"], info["sklearn_version"]) == ("estimator", None)  # no metadata: the pickle told
    assert info["sklearn_version_mismatch"] == {"trained_with": OTHER_SKLEARN, "serving_with": sklearn.__version__}
    assert predict(client, "bare")[0] == 200


@pytest.mark.parametrize("write", [bundle_naming_version, estimator_pickled_by], ids=["metadata", "pickle"])
def test_strict_sklearn_version_refuses_another_version(
    make_client: Callable[..., TestClient], models_dir: Path, write: Callable[[Path, Path, str], None]
) -> None:
    write(models_dir / "svc.pkl", models_dir / "old.pkl", OTHER_SKLEARN)
    client = make_client(strict_sklearn_version=True)
    response = client.get("/models/old")
    assert response.status_code == 500
    detail = response.json()["detail"]
    assert f"pickled by scikit-learn {OTHER_SKLEARN} and this server runs {sklearn.__version__}" in detail
    assert "STRICT_SKLEARN_VERSION=1" in detail
    assert predict(client, "old")[0] == 500
    assert predict(client, "svc")[0] == 200  # the same version is served


@pytest.mark.parametrize("name", ["a" * 128, "a" * 125, "svc"])
def test_a_file_name_given_back_is_the_same_file_name(tmp_path: Path, name: str) -> None:
    registry = Registry(tmp_path)
    file_name = registry.file_name(name)
    assert registry.file_name(file_name) == file_name == name + ".pkl"


def test_compare_with_a_long_valid_name_is_404_not_400(client: TestClient) -> None:
    response = client.post("/predict/compare", params={"models": "a" * 127}, json={"records": [RECORD]})
    assert response.status_code == 404, response.text
