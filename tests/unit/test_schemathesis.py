"""schemathesis against the OpenAPI of a real gateway process (fake engine, keys on, loopback), bounded:

- every operation: no server error (5xx) whatever schemathesis sends (examples, coverage, fuzzing, stateful);
- the translate API (translate, info, usage, health, metrics): answers conform to the schema (status codes,
  content types, bodies, headers), and requests that violate the schema are refused (issue 13).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import GatewayProcess, gateway_env

pytestmark = pytest.mark.slow

KEY = "schemathesis-key-0123456789"
CORE = ["/v1/translate", "/v1/info", "/v1/usage", "/healthz", "/readyz", "/metrics"]


def _st() -> str:
    exe = Path(sys.executable).with_name("schemathesis")
    if exe.exists():
        return str(exe)
    found = shutil.which("schemathesis")
    if found is None:
        pytest.fail("schemathesis is not installed (pip install -e '.[test]')")
    return found


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    folder = tmp_path_factory.mktemp("st")
    log = folder / "server.log"
    env = gateway_env(BATCHMT_DATA_DIR=str(folder / "data"), BATCHMT_API_KEY=KEY)
    limits = "--max-sentences-per-request 16 --max-text-chars 400 --max-queue-sentences 4096".split()
    with GatewayProcess(*limits, log=log, env=env) as gw:
        yield gw.url, folder, log
    assert "Traceback" not in log.read_text()


CONFIG = """
# a refusal of an invalid request may be a 413 too (an entry over max_text_chars, too many entries)
[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429"]
"""


def run_st(url: str, folder: Path, *args: str) -> subprocess.CompletedProcess:
    (folder / "schemathesis.toml").write_text(CONFIG, encoding="utf-8")
    cmd = [
        _st(),
        "--config-file",
        str(folder / "schemathesis.toml"),
        "run",
        f"{url}/openapi.json",
        "-H",
        f"Authorization: Bearer {KEY}",
        "--seed",
        "13",
        "--workers",
        "1",
        "--max-examples",
        "25",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        *args,
    ]
    r = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, cwd=folder, env={**os.environ, "SCHEMATHESIS_HOOKS": ""}
    )
    print(r.stdout[-6000:])
    return r


def test_no_operation_ever_answers_a_server_error(gateway):
    url, folder, _ = gateway
    r = run_st(url, folder, "--checks", "not_a_server_error")
    assert r.returncode == 0, r.stdout[-3000:]
    assert "generated" in r.stdout  # it did run cases


def test_the_translate_api_conforms_to_its_schema(gateway):
    url, folder, _ = gateway
    include = [a for p in CORE for a in ("--include-path", p)]
    r = run_st(
        url,
        folder,
        *include,
        "--checks",
        "not_a_server_error,status_code_conformance,"
        "content_type_conformance,response_schema_conformance,negative_data_rejection",
    )
    assert r.returncode == 0, r.stdout[-3000:]
