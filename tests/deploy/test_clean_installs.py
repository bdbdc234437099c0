"""Every extra installs and runs on its own, in a clean virtual environment (``python -m venv``, pip from PyPI).

Our development venv has everything (vLLM pulls in httptools, the test extra psycopg, ...), so a missing
declaration never shows there: ``pip install '.[server]'`` once could not start the server (httptools was
imported, not declared). These tests install the local checkout the way a user does, per extra:

- ``.`` (the SDK and CLI): no numpy, no server packages; ``batchmt eval`` names the extra it needs;
- ``.[server]``: ``batchmt-server serve --engine fake`` (the README's 30-second try) translates, and so does
  ``--engine http`` in front of an OpenAI-compatible completions server;
- the extras ``deploy/Dockerfile`` installs by default (its install step, run here since no Docker engine runs):
  the gateway image's PostgreSQL store imports.

The wheel is built once from the checkout; pip's cache makes the second run fast. Needs PyPI (marker system).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from tests.helpers import free_port, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.system, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _clean_env() -> dict[str, str]:
    """No PYTHONPATH (the checkout's sources must not leak in), no developer BATCHMT_ settings."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("BATCHMT_", "VIRTUAL_ENV"))}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)], env=_clean_env())
    (found,) = out.glob("batchmt-*.whl")
    return found


def _venv(path: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(path)])
    return path / "bin"


def _install(bin_: Path, wheel: Path, extras: str = "") -> None:
    target = f"{wheel}[{extras}]" if extras else str(wheel)
    _run(
        [str(bin_ / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", target],
        env=_clean_env(),
    )


def _installed(bin_: Path) -> set[str]:
    out = _run([str(bin_ / "python"), "-m", "pip", "list", "--format", "json"], env=_clean_env()).stdout
    return {d["name"].lower().replace("_", "-") for d in json.loads(out)}


def _serve(bin_: Path, tmp: Path, *args: str):
    port = free_port()
    log = tmp / f"gateway-{port}.log"
    out = log.open("w")
    cmd = [str(bin_ / "batchmt-server"), "serve", *args, "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=_clean_env(), cwd=tmp)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, 180, log)
    except BaseException:
        proc.kill()
        raise
    return proc, f"http://127.0.0.1:{port}", log


def _translate_through(url: str) -> list[dict]:
    r = httpx.post(f"{url}/v1/translate", json={"texts": ["Good morning.", "The cat sleeps."]}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["translations"]


def test_base_install_is_the_sdk_without_numpy_and_eval_names_its_extra(tmp_path, wheel):
    bin_ = _venv(tmp_path / "venv")
    _install(bin_, wheel)
    installed = _installed(bin_)
    assert "httpx" in installed and "tqdm" in installed
    heavy = installed & {"numpy", "sacrebleu", "lxml", "fastapi", "uvicorn", "pydantic", "psycopg", "torch"}
    assert not heavy, heavy
    _run([str(bin_ / "batchmt"), "--help"], env=_clean_env())
    src = tmp_path / "src.txt"
    src.write_text("Hello.\n", encoding="utf-8")
    proc = subprocess.run(
        [str(bin_ / "batchmt"), "--base-url", "http://127.0.0.1:9", "eval", "--src", str(src), "--ref", str(src)],
        capture_output=True,
        text=True,
        timeout=120,
        env=_clean_env(),
    )
    assert proc.returncode == 1
    assert "pip install 'batchmt[eval]'" in proc.stderr, proc.stderr


class _Completions(BaseHTTPRequestHandler):
    """An OpenAI-compatible completions server (what vLLM's API server answers), the fake engine's answers."""

    engine = None

    def log_message(self, *a):  # quiet
        pass

    def _json(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._json({"object": "list", "data": [{"id": "stub-model", "object": "model"}]})

    def do_POST(self):
        from batchmt_server.engines.base import GenerationParams

        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        params = GenerationParams(max_tokens=body.get("max_tokens", 256), stop=tuple(body.get("stop") or ()))
        completion = asyncio.run(self.engine.generate(body["prompt"], params))
        self._json(
            {
                "choices": [{"text": completion.text, "finish_reason": completion.finish_reason or "stop", "index": 0}],
                "usage": {"prompt_tokens": completion.prompt_tokens, "completion_tokens": completion.completion_tokens},
            }
        )


def test_server_extra_alone_serves_the_fake_engine_and_an_http_engine_and_the_dockerfile_extras(tmp_path, wheel):
    from batchmt_server.engines.fake import FakeEngine

    bin_ = _venv(tmp_path / "venv")
    _install(bin_, wheel, "server")
    installed = _installed(bin_)
    assert "httptools" in installed and "uvloop" in installed
    assert "psycopg" not in installed, "psycopg is the postgres extra's"

    # the README's 30-second try, as written there
    proc, url, log = _serve(bin_, tmp_path, "--engine", "fake")
    try:
        out = _translate_through(url)
        assert [t["text"] for t in out] == ["[de] Good morning.", "[de] The cat sleeps."], out
        # /docs and /redoc: their offline bundles come with the server extra
        for path in ("/docs", "/redoc", "/docs/assets/swagger-ui-bundle.js", "/docs/assets/redoc.standalone.js"):
            assert httpx.get(url + path, timeout=10).status_code == 200, path
    finally:
        proc.terminate()
        proc.wait(30)

    # --engine http: in front of an OpenAI-compatible completions server
    _Completions.engine = FakeEngine()
    stub = ThreadingHTTPServer(("127.0.0.1", 0), _Completions)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    try:
        engine_url = f"http://127.0.0.1:{stub.server_address[1]}"
        proc, url, log = _serve(bin_, tmp_path, "--engine", "http", "--engine-url", engine_url, "--calibration", "off")
        try:
            out = _translate_through(url)
            assert [t["text"] for t in out] == ["[de] Good morning.", "[de] The cat sleeps."], out
        finally:
            proc.terminate()
            proc.wait(30)
    finally:
        stub.shutdown()

    # deploy/Dockerfile's install step with its default EXTRAS (the gateway image compose.yaml builds, PostgreSQL)
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    extras = re.search(r"^ARG EXTRAS=(\S+)$", dockerfile, re.M)
    assert extras, "deploy/Dockerfile sets no default EXTRAS"
    assert 'pip install --no-cache-dir ".[${EXTRAS}]"' in dockerfile
    _install(bin_, wheel, extras.group(1))
    _run([str(bin_ / "python"), "-c", "import batchmt_server.stores.postgres, httptools, uvloop"], env=_clean_env())
