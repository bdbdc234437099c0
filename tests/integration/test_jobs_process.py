"""Batch jobs against real gateway processes (uvicorn on loopback, the fake engine): the official ``openai``
package as the client; SIGKILL and SIGTERM in the middle of a job of 2,400 requests, then a restart on the same
store; the translation memory across a restart."""

from __future__ import annotations

import io
import json
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from helpers import GatewayProcess, batch_jsonl, gateway_env

pytestmark = pytest.mark.slow


class Gateway(GatewayProcess):
    """A ``batchmt-server`` process on the fake engine with its store in ``data_dir``."""

    def __init__(self, data_dir: Path, *args: str, log: Path) -> None:
        env = gateway_env(drop=("BATCHMT_DATA_DIR",))
        super().__init__("--data-dir", str(data_dir), "--max-wait-ms", "1", *args, log=log, env=env, append_log=True)

    def wait(self, batch_id: str, statuses: set[str], timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            b = self.batch(batch_id)
            if b["status"] in statuses:
                return b
            time.sleep(0.1)
        raise AssertionError(f"batch still {b['status']}: {b['request_counts']}")

    def stop(self, kill: bool = True, timeout: float = 10.0) -> None:
        super().stop(kill, timeout)


@pytest.fixture
def gateways(tmp_path):
    started: list[Gateway] = []

    def start(*args: str) -> Gateway:
        g = Gateway(tmp_path / "store", *args, log=tmp_path / "gateway.log")
        started.append(g)
        return g

    yield start
    for g in started:
        g.stop()


def _jsonl(n: int, prefix: str = "req") -> bytes:
    return batch_jsonl(n, "Sentence {i} of the batch.", "And its neighbour {i}.", prefix=prefix)


def _check_exactly_once(out_lines: list[dict], n: int, prefix: str = "req") -> None:
    ids = [o["custom_id"] for o in out_lines]
    assert len(ids) == n and sorted(ids) == sorted(f"{prefix}-{i}" for i in range(n))  # each exactly once
    for o in out_lines:  # and each with its own request's translations
        i = int(o["custom_id"].rsplit("-", 1)[1])
        texts = [t["text"] for t in o["response"]["body"]["translations"]]
        assert texts == [f"[de] Sentence {i} of the batch.", f"[de] And its neighbour {i}."]


def test_the_openai_package_drives_the_whole_batch_api(gateways):
    gw = gateways("--job-max-file-bytes", "400000")
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0)
    broken = {"custom_id": "broken", "method": "POST", "url": "/v1/translate", "body": {"sentences": []}}
    rows = _jsonl(40) + json.dumps(broken).encode() + b"\n"
    f = client.files.create(file=("requests.jsonl", io.BytesIO(rows)), purpose="batch")
    assert f.purpose == "batch" and f.bytes == len(rows) and f.filename == "requests.jsonl"
    assert client.files.retrieve(f.id).id == f.id
    b = client.batches.create(
        input_file_id=f.id,
        endpoint="/v1/translate",  # type: ignore[arg-type]
        completion_window="24h",
        metadata={"owner": "test"},
    )
    assert b.status == "in_progress" and b.metadata == {"owner": "test"}
    deadline = time.monotonic() + 60
    while (b := client.batches.retrieve(b.id)).status != "completed":
        assert time.monotonic() < deadline, b
        time.sleep(0.1)
    assert b.request_counts.total == 41 and b.request_counts.completed == 40 and b.request_counts.failed == 1
    assert b.usage is not None and b.usage.input_tokens > 0 and b.usage.output_tokens > 0
    out = [json.loads(x) for x in client.files.content(b.output_file_id).text.splitlines()]
    _check_exactly_once(out, 40)
    seven_in = ["Sentence 7 of the batch.", "And its neighbour 7."]
    direct = httpx.post(gw.url + "/v1/translate", json={"sentences": seven_in, "translation_memory": False}).json()
    seven = next(o for o in out if o["custom_id"] == "req-7")["response"]["body"]
    assert seven["translations"] == direct["translations"] and seven["signature"] == direct["signature"]
    (err,) = [json.loads(x) for x in client.files.content(b.error_file_id).text.splitlines()]
    assert err["custom_id"] == "broken" and err["error"]["code"] == "empty_sentences"

    # cancel a large batch while it runs
    big = client.files.create(file=("big.jsonl", io.BytesIO(_jsonl(2500, "big"))), purpose="batch")
    b2 = client.batches.create(
        input_file_id=big.id,
        endpoint="/v1/translate",  # type: ignore[arg-type]
        completion_window="24h",
    )
    assert client.batches.cancel(b2.id).status in ("cancelling", "cancelled")
    deadline = time.monotonic() + 30
    while (b2 := client.batches.retrieve(b2.id)).status != "cancelled":
        assert time.monotonic() < deadline, b2
        time.sleep(0.1)
    assert b2.request_counts.completed < 2500 and b2.cancelled_at is not None

    # listing, newest first, with the package's cursor pagination
    listed = [x.id for x in client.batches.list(limit=1)]
    assert listed == [b2.id, b.id]

    # a window that passes while the job waits behind nothing it can finish: expired
    # (in this fast engine, 2 lines finish at once, so the window is tested in test_jobs.py); here: refusals
    with pytest.raises(openai.UnprocessableEntityError) as exc:
        empty = client.files.create(file=("empty.jsonl", io.BytesIO(b"")), purpose="batch")
        client.batches.create(
            input_file_id=empty.id,
            endpoint="/v1/translate",  # type: ignore[arg-type]
            completion_window="24h",
        )
    assert exc.value.status_code == 422 and "no request lines" in str(exc.value)
    before = [x.id for x in client.files.list()]
    with pytest.raises(openai.APIStatusError) as exc:
        client.files.create(file=("huge.jsonl", io.BytesIO(_jsonl(4000))), purpose="batch")
    assert exc.value.status_code == 413
    assert [x.id for x in client.files.list()] == before  # nothing stored


def _job_under_way(gw: Gateway, n: int) -> str:
    """A batch job of ``n`` requests on ``gw``, once 300 of its lines are done: its id."""
    f = httpx.post(gw.url + "/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", _jsonl(n))}).json()
    b = httpx.post(
        gw.url + "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
    ).json()
    while gw.batch(b["id"])["request_counts"]["completed"] < 300:
        time.sleep(0.02)
    return b["id"]


def test_sigkill_mid_job_then_restart_completes_exactly_once(gateways):
    n = 2400
    gw = gateways("--job-lease-s", "3", "--job-max-lines-in-flight", "4")
    batch_id = _job_under_way(gw, n)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(10)
    gw2 = gateways("--job-lease-s", "3", "--job-max-lines-in-flight", "4")
    at_restart = gw2.batch(batch_id)
    assert at_restart["status"] == "in_progress" and 300 <= at_restart["request_counts"]["completed"] < n
    final = gw2.wait(batch_id, {"completed"})
    assert final["request_counts"] == {"total": n, "completed": n, "failed": 0}
    out = [json.loads(x) for x in httpx.get(f"{gw2.url}/v1/files/{final['output_file_id']}/content").text.splitlines()]
    _check_exactly_once(out, n)
    assert final["error_file_id"] is None


def test_sigterm_is_graceful_and_gives_lines_back_at_once(gateways):
    n = 2400
    gw = gateways("--job-lease-s", "600", "--job-max-lines-in-flight", "4")  # a lease that would outlast the test
    batch_id = _job_under_way(gw, n)
    gw.proc.send_signal(signal.SIGTERM)
    # uvicorn shuts down gracefully, then re-raises the signal it captured (exit status -15)
    assert gw.proc.wait(30) in (0, -signal.SIGTERM)
    log = gw.log.read_text()
    assert "lines given back" in log and "Application shutdown complete" in log
    gw2 = gateways("--job-lease-s", "600", "--job-max-lines-in-flight", "4")
    final = gw2.wait(batch_id, {"completed"}, timeout=60)  # no line waits for a 600 s lease
    out = [json.loads(x) for x in httpx.get(f"{gw2.url}/v1/files/{final['output_file_id']}/content").text.splitlines()]
    _check_exactly_once(out, n)


def test_translation_memory_survives_a_restart(gateways):
    gw = gateways()
    r1 = httpx.post(gw.url + "/v1/translate", json={"sentences": ["The museum is closed on Mondays."]}).json()
    time.sleep(0.5)  # new entries are written within 50 ms (in batches)
    gw.proc.send_signal(signal.SIGKILL)
    gw.proc.wait(10)
    gw2 = gateways()
    r2 = httpx.post(gw2.url + "/v1/translate", json={"sentences": ["The museum is closed on Mondays."]}).json()
    assert [t["text"] for t in r2["translations"]] == [t["text"] for t in r1["translations"]]
    assert r2["usage"]["prompt_tokens"] == 0 and r2["usage"]["memory_hits"] == 1
    metrics = httpx.get(gw2.url + "/metrics").text
    assert 'batchmt_reused_sentences_total{kind="memory"} 1.0' in metrics


def test_sdk_and_cli_submit_wait_download_and_translate_as_job(gateways, tmp_path, capsys):
    import batchmt
    from batchmt.cli import main

    gw = gateways()
    src = tmp_path / "news.en"
    lines = [f"Line number {i} of the news." if i % 7 else "" for i in range(1, 101)]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    expected = [f"[de] {x}" if x else "" for x in lines]

    with batchmt.Client(base_url=gw.url) as client:
        job = client.batches.create_from_file(src, sentences_per_request=8, metadata={"k": "v"})
        assert job.request_counts.total == 13 and job.metadata == {"k": "v", "batchmt_lines": "86"}  # non-blank
        job = client.batches.wait(job.id, progress=False, poll_interval=0.1)
        assert job.status == "completed" and job.request_counts.completed == 13
        assert client.batches.download(job, tmp_path / "out.de", source=src) == []
        assert (tmp_path / "out.de").read_text(encoding="utf-8").splitlines() == expected
        assert [b.id for b in client.batches.list(limit=5)] == [job.id]

    base = ["--base-url", gw.url]
    assert main(["batch", "submit", str(src), "--sentences-per-request", "16", *base]) == 0
    batch_id = capsys.readouterr().out.strip()
    assert batch_id.startswith("batch_")
    assert main(["batch", "wait", batch_id, "--no-progress", *base]) == 0
    assert json.loads(capsys.readouterr().out)["request_counts"]["completed"] == 7
    assert main(["batch", "download", batch_id, "-o", str(tmp_path / "cli.de"), "--source", str(src), *base]) == 0
    assert (tmp_path / "cli.de").read_text(encoding="utf-8").splitlines() == expected
    assert main(["batch", "download", batch_id, "-o", str(tmp_path / "raw.jsonl"), *base]) == 0
    assert len((tmp_path / "raw.jsonl").read_text().splitlines()) == 7
    assert main(["batch", "status", batch_id, *base]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "completed"
    assert main(["batch", "list", *base]) == 0
    assert batch_id in capsys.readouterr().out
    assert main(["batch", "cancel", batch_id, *base]) == 1  # finished: 409, a clear error
    assert "cannot be cancelled" in capsys.readouterr().err

    assert main(["translate", "-i", str(src), "-o", str(tmp_path / "job.de"), "--as-job", "--no-progress", *base]) == 0
    assert (tmp_path / "job.de").read_text(encoding="utf-8").splitlines() == expected

    # a document format too: JSONL with the text in a field (the other fields kept)
    rows = [{"id": i, "body": f"Row {i} is here."} for i in range(50)]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert (
        main(
            [
                "translate",
                "-i",
                str(tmp_path / "rows.jsonl"),
                "-o",
                str(tmp_path / "rows.de.jsonl"),
                "--field",
                "body",
                "--as-job",
                "--no-progress",
                "--split-sentences",
                "off",
                *base,
            ]
        )
        == 0
    )
    got = [json.loads(x) for x in (tmp_path / "rows.de.jsonl").read_text(encoding="utf-8").splitlines()]
    assert got == [{"id": i, "body": f"[de] Row {i} is here."} for i in range(50)]
