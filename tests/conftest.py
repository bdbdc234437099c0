"""Session fixtures shared by every test folder.

The real engines are loaded once per test session, and only when a test asks for them:

- ``gateway_app``: the gateway FastAPI app with the real in-process vLLM engine (``AsyncLLM``)
  on the embedded model, running on the session event loop (drive it with ``httpx.ASGITransport``).
- ``vllm_server``: a real ``python -m vllm.entrypoints.openai.api_server`` subprocess on loopback.
- ``gateway_url``: a real ``batchmt-server`` subprocess (uvicorn) on loopback, using the HTTP engine
  against ``vllm_server``.

``BATCHMT_TEST_DATA`` names the folder with ``src.en``/``ref.de`` (default ``../shared/data/newstest2021_ende``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.register_assert_rewrite("helpers")  # its shared checks report like the tests' own asserts

from helpers import SRC_PATH, free_port, vllm_api_server_cmd, wait_http  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
ENGINE_START_TIMEOUT = float(os.environ.get("BATCHMT_TEST_ENGINE_TIMEOUT", "900"))


def _model_dir() -> str:
    from batchmt_server.models.embedded import prepare_embedded_model
    from batchmt_server.settings import Settings

    return str(prepare_embedded_model(Settings().cache_dir))


class _Proc:
    def __init__(self, name: str, cmd: list[str], ready_path: str, env: dict | None = None) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = ARTIFACTS / f"{name}.log"
        self.ready_url = self.url + ready_path
        full_env = {**os.environ, **(env or {})}
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port)],
            stdout=self.log.open("w"),
            stderr=subprocess.STDOUT,
            env=full_env,
            cwd=REPO,
        )

    def wait(self) -> str:
        wait_http(self.ready_url, self.proc, ENGINE_START_TIMEOUT, self.log, interval=1.0)
        return self.url

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


_procs: dict[str, _Proc] = {}


def _vllm_server_proc() -> _Proc:
    """Started on first use (and early, by gateway_app, so the two engines load side by side)."""
    if "vllm" not in _procs:
        _procs["vllm"] = _Proc(
            "vllm-api-server",
            vllm_api_server_cmd(_model_dir(), max_num_seqs=64, extra=["--enable-prompt-tokens-details"]),
            "/v1/models",
            env={
                "VLLM_CPU_OMP_THREADS_BIND": os.environ.get(
                    "VLLM_CPU_OMP_THREADS_BIND", f"0-{(os.cpu_count() or 1) - 1}"
                ),
                "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
                "VLLM_CPU_KVCACHE_SPACE": "2",
            },
        )
    return _procs["vllm"]


def pytest_sessionfinish(session, exitstatus):
    for p in _procs.values():
        p.stop()


@pytest.fixture(autouse=True)
def _own_store(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own durable store (batch jobs, translation memory): nothing leaks between tests or
    from the developer's ~/.cache/batchmt/data."""
    monkeypatch.setenv("BATCHMT_DATA_DIR", str(tmp_path_factory.mktemp("store")))
    monkeypatch.delenv("BATCHMT_DATABASE_URL", raising=False)


@pytest.fixture(autouse=True)
def _root_logging_restored():
    """``batchmt-server``'s main (run in-process by the CLI tests) installs a root handler on the sys.stderr of the
    moment, which pytest's capture closes after the test: every later log line then printed "--- Logging error ---"
    into the next tests' stderr (and failed the SDK's "prints nothing" tests when the whole suite ran)."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def engine_test_settings(**overrides):
    import tempfile

    from batchmt_server.settings import Settings

    base = dict(
        data_dir=tempfile.mkdtemp(prefix="batchmt-store-"),
        enforce_eager=True,
        cpu_kvcache_gib=2,
        calibration="off",
        max_num_seqs=64,
        max_wait_ms=30.0,
        max_prompts_in_flight=4,
        max_sentences_per_prompt=4,
        pack_policy="adaptive",
    )
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
async def gateway_app():
    """The gateway with the real in-process vLLM engine, started once per session."""
    from batchmt_server.http.app import create_app

    _vllm_server_proc()  # let the api_server load alongside
    app = create_app(engine_test_settings())
    async with app.router.lifespan_context(app):
        gw = app.state.gateway
        t0 = time.monotonic()
        while not gw.ready.is_set():
            if gw.boot_error:
                pytest.fail(f"engine failed to start: {gw.boot_error}")
            if time.monotonic() - t0 > ENGINE_START_TIMEOUT:
                pytest.fail("engine did not start in time")
            await asyncio.sleep(0.5)
        yield app


@pytest.fixture(scope="session")
def vllm_server() -> str:
    return _vllm_server_proc().wait()


@pytest.fixture(scope="session")
def gateway_url(vllm_server: str) -> str:
    """A real batchmt-server process (uvicorn, HTTP engine → the vLLM api_server)."""
    if "gateway" not in _procs:
        _procs["gateway"] = _Proc(
            "gateway",
            [
                sys.executable,
                "-m",
                "batchmt_server",
                "serve",
                "--engine-url",
                vllm_server,
                "--model",  # what the api_server serves: its self-training card names its template
                _model_dir(),
                "--host",
                "127.0.0.1",
                "--max-wait-ms",
                "30",
                "--max-prompts-in-flight",
                "8",
                "--max-sentences-per-prompt",
                "4",
                "--calibration",
                "off",
                "--data-dir",
                tempfile.mkdtemp(prefix="batchmt-store-"),
                "--translation-memory-size",
                "0",  # every sentence reaches the engine (repeats included)
                "--price-prompt-per-mtok",
                "0.5",
                "--price-cached-prompt-per-mtok",
                "0.05",
                "--price-completion-per-mtok",
                "1.5",
                "--price-engine-hour",
                "2",
            ],
            "/readyz",
            env={"PYTHONPATH": SRC_PATH},
        )
    return _procs["gateway"].wait()
