"""The served OpenAPI document against the live API: schemathesis with every check, for each dialect.

A schema-valid request must be answered, a schema-violating one refused, every answer as documented, and
never a 5xx. One exception, stated in the configuration below: an inference request is a set of columns
whose lengths must agree with each other and with their shapes, which JSON Schema cannot express.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

# Enough examples per operation to find what the document and the app disagree on, in well under a minute.
MAX_EXAMPLES = 25
SEED = 20260401
CONFIG = """
[[operations]]
include-path-regex = "/infer$"
# Columns of unequal length, or a shape that disagrees with its data, are schema-valid but cannot be predicted.
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "404", "413"]
"""


@pytest.fixture(scope="module")
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
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("st")), "--config-file", str(config), "run", f"{server}/openapi.json",
        "--checks", "all", "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--no-color", "--generation-database", "none", *selection,
    ]  # fmt: skip
    # In tmp_path: whatever schemathesis writes stays out of the checkout.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or " passed" in result.stdout, result.stdout[-2000:]
