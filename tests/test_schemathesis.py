"""The served OpenAPI document against the live API: schemathesis with every check, for each dialect.

A schema-valid request must be answered, a schema-violating one refused, every answer as documented, and
never a 5xx. The document says all the server requires that JSON Schema can say; what it cannot is named in
the configuration below, the only exception made.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

# Generated examples per operation, beyond the coverage phase's own cases at each schema's boundaries (where the
# disagreements between the document and the app were found).
MAX_EXAMPLES = 10
SEED = 1
# The inference request's rules that JSON Schema cannot state, and the only statuses a schema-valid request
# may get for them beyond the defaults (MAX_RECORDS it does state: maxItems, and a maximum on a shape's N):
# - 400: every column holds as many values as its shape says, and every column the same number N of records;
# - 400: a `binary_data_size` agrees with the bytes that follow the JSON (and its Inference-Header-Content-Length
#   header), which the document cannot see;
# - 400: `predict_proba` asked of a model that has none (the svc): the document is the same for every model.
# A body over MAX_RECORDS breaks the document (maxItems, a shape's maximum) and is refused with 413, as the
# document says; schemathesis counts 413 as a refusal once told (its default list of refusals lacks it).
# The versioned inference is sent the logistic regression at its current version, or it would only ever be 404.
CONFIG = """
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429", "5xx"]

[[operations]]
include-path-regex = "/infer$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404"]

[[operations]]
include-path-regex = "/versions/[^/]+/infer$"
parameters = { name = "logistic_regression", version = "VERSION" }
"""
# The run's summary: every operation selected was tested, every case generated passed, and its last line counts
# no failure and no error ("=== 1 warning in 22.44s ===").
TESTED = re.compile(r"Selected: (\d+)/\d+\n\s+Tested: (\d+)\n")
CASES = re.compile(r"Test cases:\n\s+(\d+) generated, (\d+) passed\n")
LAST_LINE = re.compile(r"^=+ (?!.*(failure|error)).* in [\d.]+s =+$")


@pytest.fixture
def server(live_url: str) -> str:
    return live_url


@pytest.mark.parametrize(
    "selection",
    [
        pytest.param(["--exclude-path-regex", "^/v2"], id="original"),
        pytest.param(["--include-path-regex", "^/v2"], id="v2"),
    ],
)
def test_the_api_keeps_its_documented_promises(server: str, tmp_path: Path, selection: list[str]) -> None:
    version = httpx.get(f"{server}/v2/models/logistic_regression").json()["versions"][0]
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG.replace("VERSION", version))
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run", f"{server}/openapi.json",
        "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--no-color", "--generation-database", "none", *selection,
    ]  # fmt: skip
    # In tmp_path: whatever schemathesis writes stays out of the checkout.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    output = result.stdout
    assert result.returncode == 0, output[-6000:] + result.stderr[-2000:]
    tested, cases = TESTED.search(output), CASES.search(output)
    assert tested and tested[1] == tested[2], output[-2000:]
    assert cases and int(cases[1]) > 0 and cases[1] == cases[2], output[-2000:]
    assert LAST_LINE.match(output.strip().splitlines()[-1]), output[-2000:]
