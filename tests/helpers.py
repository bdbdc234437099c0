"""Small shared checks and helpers for the tests (no fixtures here)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent
SRC_PATH = os.pathsep.join([str(REPO / "server"), str(REPO / "client")])  # PYTHONPATH for a child process


def data_dir() -> Path:
    return Path(os.environ.get("BATCHMT_TEST_DATA", REPO.parent / "shared" / "data" / "newstest2021_ende"))


def read_lines(name: str, limit: int, skip: int = 0) -> list[str]:
    """``limit`` lines of the test set (read at run time: the data is not copied into the repo)."""
    path = data_dir() / name
    if not path.exists():
        pytest.fail(f"test data not found at {path}; set BATCHMT_TEST_DATA")
    with path.open(encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return [line for line in lines if line][skip : skip + limit]


_GERMAN = {
    "der",
    "die",
    "das",
    "und",
    "ist",
    "nicht",
    "ein",
    "eine",
    "mit",
    "von",
    "zu",
    "den",
    "dem",
    "auf",
    "für",
    "sich",
    "im",
    "es",
    "wir",
    "ich",
    "sie",
    "auch",
    "wird",
    "werden",
    "hat",
    "sind",
    "bei",
    "aus",
    "nach",
    "um",
    "noch",
    "wie",
    "dass",
    "einen",
    "einem",
    "zum",
    "zur",
    "vom",
    "ab",
    "am",
    "ihre",
    "sein",
}
_ENGLISH = {"the", "and", "is", "of", "to", "in", "that", "it", "with", "for", "was", "on", "are", "this", "have"}


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def looks_german(text: str) -> bool:
    """More German function words (or umlauts) than English ones."""
    w = words(text)
    de = sum(x in _GERMAN for x in w) + len(re.findall(r"[äöüß]", text.lower()))
    en = sum(x in _ENGLISH for x in w)
    return de > en


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


@asynccontextmanager
async def running_gateway(engine=None, *, wait_ready: bool = True, **settings) -> AsyncIterator[tuple]:
    """A gateway app on the fake engine (or ``engine``) with its lifespan running, and an httpx client on it:
    ``async with running_gateway(max_queue_sentences=2) as (client, app): ...``. Defaults suit unit tests:
    1 ms window, no warm-up prompt, no calibration."""
    from batchmt_server.engines.fake import FakeEngine
    from batchmt_server.http.app import create_app
    from batchmt_server.settings import Settings

    settings = {"max_wait_ms": 1, "warmup": False, "calibration": "off", **settings}
    app = create_app(Settings(engine="fake", **settings), engine=engine or FakeEngine())
    async with app.router.lifespan_context(app):
        if wait_ready:
            await asyncio.wait_for(app.state.gateway.ready.wait(), 10)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client, app


# --- real processes on loopback -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path, interval: float = 0.1) -> None:
    """Until ``url`` answers 200. RuntimeError with the log's tail if ``proc`` exits first, or if ``timeout`` s
    pass (``proc`` is then sent SIGTERM)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: exited with {proc.returncode}; log:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    proc.terminate()
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s; log:\n{log.read_text()[-4000:]}")


def gateway_env(drop: tuple[str, ...] = ("BATCHMT_",), **extra: str) -> dict[str, str]:
    """The environment for a gateway process: this one without the variables starting with ``drop`` (the
    developer's own settings), the tree's sources on PYTHONPATH, then ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    return {**env, "PYTHONPATH": SRC_PATH, **extra}


class GatewayProcess:
    """``batchmt_server serve --engine fake --calibration off --no-warmup *args`` on a free loopback port, its
    output in ``log``, ready (``ready_path`` answers 200) once constructed. ``with GatewayProcess(...) as gw:``
    stops it (SIGTERM) at the end."""

    def __init__(
        self,
        *args: str,
        log: Path,
        env: dict[str, str] | None = None,
        append_log: bool = False,
        ready_path: str = "/readyz",
        ready_timeout: float = 60.0,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "batchmt_server", "serve", "--engine", "fake", "--calibration", "off"]
        cmd += ["--no-warmup", "--host", "127.0.0.1", "--port", str(self.port), *args]
        with log.open("a" if append_log else "w") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=gateway_env() if env is None else env, cwd=REPO
            )
        wait_http(self.url + ready_path, self.proc, ready_timeout, log)

    def batch(self, batch_id: str) -> dict:
        return httpx.get(f"{self.url}/v1/batches/{batch_id}", timeout=10).json()

    def stop(self, kill: bool = False, timeout: float = 20.0) -> None:
        """SIGTERM (or SIGKILL) if it still runs, then wait for it (TimeoutExpired if it will not end)."""
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
        self.proc.wait(timeout)

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def vllm_api_server_cmd(model: str, *, max_num_seqs: int, extra: Sequence[str] = ()) -> list[str]:
    """A ``vllm.entrypoints.openai.api_server`` on loopback serving the embedded Gemma-3-270M at ``model`` the way
    the tests run it on CPU (float32, eager, prefix caching); add ``--port``."""
    return [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        model,
        "--served-model-name",
        "gemma-3-270m",
        "--dtype",
        "float32",
        "--block-size",
        "32",
        "--enable-prefix-caching",
        "--enforce-eager",
        "--max-model-len",
        "2048",
        "--max-num-seqs",
        str(max_num_seqs),
        *extra,
        "--host",
        "127.0.0.1",
    ]


def batch_jsonl(n: int, *sentences: str, prefix: str = "req") -> bytes:
    """A batch input file of ``n`` translate requests (custom ids ``{prefix}-{i}``), each of ``sentences`` with
    ``{i}`` filled in."""
    rows = [
        {
            "custom_id": f"{prefix}-{i}",
            "method": "POST",
            "url": "/v1/translate",
            "body": {"sentences": [s.format(i=i) for s in sentences]},
        }
        for i in range(n)
    ]
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


# --- the stores' shared contract ------------------------------------------------------------------------------


def job_record(job_id: str = "batch_1", **kw):
    """A ``JobRecord`` in progress (created at 1000, expiring a day later), with ``kw`` on top."""
    from batchmt_server.stores import JobRecord

    base = dict(
        id=job_id,
        input_file_id="file-1",
        endpoint="/v1/translate",
        completion_window="24h",
        status="in_progress",
        created_at=1000,
        expires_at=1000 + 86400,
        in_progress_at=1000,
    )
    base.update(kw)
    return JobRecord(**base)


def new_lines(n: int, bad: tuple[int, ...] = ()) -> list:
    """Lines 1..n (custom ids c1..cn) of a job's input; the ``bad`` ones failed validation."""
    from batchmt_server.stores import NewLine

    return [
        NewLine(i, f"c{i}", error_output=json.dumps({"custom_id": f"c{i}", "error": "bad"}))
        if i in bad
        else NewLine(i, f"c{i}", body=json.dumps({"sentences": [f"s{i}"]}))
        for i in range(1, n + 1)
    ]


async def check_claims_complete_exactly_once(store):
    """The claim/lease protocol on any store: leases, a lease expiring and its line taken over, the late owner's
    results ignored, a line completed once. Returns the job as created (5 lines, line 3 failed validation); left
    claimed at the end: lines 4 and 5, by B (at 101, for 10 s)."""
    from batchmt_server.stores import JobUsage, LineResult

    await store.create_job(job_record(), new_lines(5, bad=(3,)))
    created = await store.get_job("batch_1")
    assert (created.total, created.completed, created.failed) == (5, 0, 1)
    a = await store.claim_lines("A", 2, lease_seconds=10, now=100.0)
    assert [c.line_no for c in a] == [1, 2]
    b = await store.claim_lines("B", 10, lease_seconds=10, now=101.0)
    assert [c.line_no for c in b] == [4, 5]  # A's lines are leased; line 3 failed validation
    assert await store.claim_lines("B", 10, lease_seconds=10, now=105.0) == []
    # A hangs; its lease expires; B takes line 1 over and completes it
    b2 = await store.claim_lines("B", 1, lease_seconds=10, now=111.0)
    assert [(c.line_no, c.attempts) for c in b2] == [(1, 2)]
    assert await store.complete_lines("B", [LineResult("batch_1", 1, True, '{"from":"B"}', JobUsage(sentences=1))]) == 1
    # A wakes up: its results for line 1 (no longer its own) are ignored, line 2 (still its own, lease expired but
    # nobody claimed it) is written
    assert (
        await store.complete_lines(
            "A",
            [
                LineResult("batch_1", 1, True, '{"from":"A"}', JobUsage(sentences=1)),
                LineResult("batch_1", 2, True, '{"from":"A"}', JobUsage(sentences=1)),
            ],
        )
        == 1
    )
    # a second completion of the same line by its old owner writes nothing
    assert await store.complete_lines("B", [LineResult("batch_1", 1, True, '{"again":1}')]) == 0
    job = await store.get_job("batch_1")
    assert (job.completed, job.failed, job.usage.sentences) == (2, 1, 2)
    assert await store.open_lines("batch_1") == {"done": 2, "failed": 1, "claimed": 2}
    return created


async def check_retention(store):
    """Files expire, are deleted, count against their owner's storage; a finished job's lines go with its last file
    (issue 24). On any store."""
    from batchmt_server.stores import FileRecord, JobUsage, LineResult

    await store.put_file(FileRecord("file-a", "batch", "a.jsonl", 100, 10, owner="k1", expires_at=500), b"x" * 100)
    await store.put_file(FileRecord("file-b", "batch", "b.jsonl", 40, 11, owner="k1"), b"y" * 40)
    await store.put_file(FileRecord("file-c", "batch", "c.jsonl", 7, 12, owner=None, expires_at=900), b"z" * 7)
    assert await store.stored_bytes("k1") == 140 and await store.stored_bytes(None) == 7
    assert (await store.get_file("file-a")).expires_at == 500
    assert await store.delete_expired_files(499) == 0
    assert await store.delete_expired_files(500) == 1
    assert await store.get_file("file-a") is None and await store.stored_bytes("k1") == 40
    assert await store.delete_file("file-b") is True and await store.delete_file("file-b") is False
    await store.create_job(job_record("batch_r", owner="k1", output_expires_after=3600), new_lines(2, bad=(2,)))
    (line,) = await store.claim_lines("W", 5, lease_seconds=10, now=100.0)
    await store.complete_lines("W", [LineResult("batch_r", line.line_no, True, '{"ok":1}', JobUsage(sentences=1))])
    job = await store.finish_job(
        "batch_r", ["in_progress"], "completed", 2000, output_file_id="file-o", error_file_id="file-e"
    )
    out, err = await store.get_file("file-o"), await store.get_file("file-e")
    assert out.expires_at == 2000 + 3600 and err.expires_at == 2000 + 3600 and job.output_expires_after == 3600
    assert sum((await store.open_lines("batch_r")).values()) == 2
    assert await store.delete_file("file-o")
    assert sum((await store.open_lines("batch_r")).values()) == 2  # the error file still needs its line
    assert await store.delete_expired_files(2000 + 3600) == 2  # file-c and the error file (and the job's lines)
    assert await store.open_lines("batch_r") == {}
    await store.probe()


# a chat template for the tiny Llama (its prompts take the chat form)
CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def write_tiny_model(kind: str, folder: Path, *, weights: bool = False) -> None:
    """Config + tokenizer of a 2-layer model of ``kind`` (llama with a chat template, or falcon without), the
    embedded Gemma's tokenizer; vLLM fills it with random weights (``load_format=dummy``). ``weights``: random
    weights saved too (``save_pretrained``), for a model that is trained."""
    from transformers import AutoTokenizer, FalconConfig, LlamaConfig

    from batchmt_server.models.embedded import prepare_embedded_model
    from batchmt_server.settings import Settings

    tok = AutoTokenizer.from_pretrained(str(prepare_embedded_model(Settings().cache_dir)))
    ids = dict(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        hidden_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    if kind == "llama":
        config = LlamaConfig(
            intermediate_size=256, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True, **ids
        )
        config.architectures = ["LlamaForCausalLM"]
        tok.chat_template = CHATML
    else:
        config = FalconConfig(max_position_embeddings=2048, **ids)
        config.architectures = ["FalconForCausalLM"]
    config.save_pretrained(folder)
    tok.save_pretrained(folder)
    if weights:
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)


async def check_memory_store(store):
    """The translation memory's guarantees on any store backend (stores/base.py): scopes, a human entry preferred
    and never evicted, an import over the limit refused whole, paging, purge."""
    from batchmt_server.stores.base import MemoryFull

    await store.tm_put("a", "sig", [("s1", "model-a")], 1.0, 10)
    await store.tm_put("b", "sig", [("s1", "model-b")], 1.0, 10)
    assert await store.tm_import("a", [("s1", "human-a"), ("s2", "human-a2")], 2.0, 10) == 2
    got = await store.tm_get("a", "sig", ["s1", "s2"], 3.0)
    assert {k: (v.target, v.origin) for k, v in got.items()} == {
        "s1": ("human-a", "human"),
        "s2": ("human-a2", "human"),
    }
    assert (await store.tm_get("b", "other-sig", ["s1", "s2"], 3.0)) == {}  # b: its own, under its signature
    assert (await store.tm_get("b", "sig", ["s1"], 3.0))["s1"].target == "model-b"
    await store.tm_put("a", "sig", [(f"x{i}", "t") for i in range(5)], 4.0, 3)  # the bound: model entries only
    assert await store.tm_size() == 3 and await store.tm_count("a", "human") == 2
    with pytest.raises(MemoryFull):
        await store.tm_import("a", [("s3", "h"), ("s4", "h")], 5.0, 3)
    assert await store.tm_count("a", "human") == 2  # rolled back whole
    entries = await store.tm_entries("a", "human")
    assert [(e.source, e.signature, e.origin) for e in entries] == [("s1", "", "human"), ("s2", "", "human")]
    page = await store.tm_entries("a", limit=2)
    rest = await store.tm_entries("a", after=(page[-1].signature, page[-1].source), limit=100)
    assert len(page) + len(rest) == await store.tm_count("a")
    # the bound evicted the least recently used model entries: a's and b's s1 (the human s1 stays)
    assert await store.tm_get("b", "sig", ["s1"], 6.0) == {}
    await store.tm_put("a", "sig", [("s2", "model-a2")], 7.0, 10)
    assert await store.tm_purge("a", source="s2") == 2  # the human and the model entry of s2
    models = await store.tm_count(origin="model")
    assert models == 3  # a's three newest x
    assert await store.tm_purge(None, origin="model") == models
    assert await store.tm_count(origin="model") == 0 and await store.tm_count("a", "human") == 1


async def check_glossary_store(store) -> None:
    """A store's glossaries (issue 27): created with their entries in one transaction, per owner (the per-owner
    limit holds), listed per owner or all, read, deleted with their entries."""
    from batchmt_server.stores.base import GlossaryRecord

    def rec(gid: str, owner: str | None) -> GlossaryRecord:
        return GlossaryRecord(gid, owner, f"name {gid}", "en", "de", 2, "d1g35t0000", 1_700_000_000)

    entries = [("invoice", "Rechnung"), ("cloud storage", "Cloud-Speicher")]
    assert await store.glossary_create(rec("gl-a1", "a"), entries, 2)
    assert await store.glossary_create(rec("gl-a2", "a"), entries[:1], 2)
    assert not await store.glossary_create(rec("gl-a3", "a"), entries, 2)  # a's limit: nothing stored
    assert await store.glossary_create(rec("gl-b1", "b"), entries, 2)
    assert await store.glossary_create(rec("gl-n1", None), entries, 2)
    assert await store.glossary_get("gl-a3") is None
    assert await store.glossary_get("gl-a1") == rec("gl-a1", "a")
    assert [g.id for g in await store.glossary_list("a")] == ["gl-a1", "gl-a2"]
    assert [g.id for g in await store.glossary_list(None)] == ["gl-n1"]
    assert {g.id for g in await store.glossary_list("a", every=True)} == {"gl-a1", "gl-a2", "gl-b1", "gl-n1"}
    assert await store.glossary_entries("gl-a1") == sorted(entries)
    assert await store.glossary_delete("gl-a1") and not await store.glossary_delete("gl-a1")
    assert await store.glossary_entries("gl-a1") == [] and await store.glossary_get("gl-a1") is None
    assert await store.glossary_create(rec("gl-a4", "a"), entries, 2)  # room again after the delete
