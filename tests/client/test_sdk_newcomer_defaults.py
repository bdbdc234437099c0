"""SDK defaults a newcomer meets (issue 26), against a real ``batchmt-server`` (fake engine): no progress bar in
logs (only on a terminal), batch progress counted in lines not 32-line requests, and a cancelled batch's
download says it was cancelled instead of writing a file of empty lines."""

from __future__ import annotations

import io

import pytest

import batchmt
from batchmt.batches import LINES_KEY, BatchFailed
from helpers import GatewayProcess, gateway_env


@pytest.fixture(scope="module")
def slow_gateway(tmp_path_factory: pytest.TempPathFactory):
    """Each engine call takes 300 ms: a batch of many requests can be cancelled midway."""
    log = tmp_path_factory.mktemp("slow-gateway") / "server.log"
    store = tmp_path_factory.mktemp("store")
    args = ("--data-dir", str(store), "--fake-engine-delay-ms", "300", "--translation-memory-size", "0")
    with GatewayProcess(*args, log=log, env=gateway_env()) as gw:
        yield gw.url


def test_no_progress_bar_when_stderr_is_not_a_terminal(slow_gateway, tmp_path, capfd):
    src = tmp_path / "in.txt"
    src.write_text("One line.\nTwo lines.\n", encoding="utf-8")
    with batchmt.Client(base_url=slow_gateway, timeout=60) as client:
        client.translate_file(src, tmp_path / "out.txt")  # progress left at its default
    assert (tmp_path / "out.txt").read_text(encoding="utf-8") == "[de] One line.\n[de] Two lines.\n"
    assert capfd.readouterr().err == ""  # a log file gets no tqdm bar


def test_batch_progress_counts_lines_and_a_cancelled_batch_download_says_so(slow_gateway, tmp_path):
    src = tmp_path / "big.txt"
    src.write_text("".join(f"Line number {i} is here.\n" for i in range(70)), encoding="utf-8")
    with batchmt.Client(base_url=slow_gateway, timeout=60) as client:
        b = client.batches.create_from_file(src, kind="text", sentences_per_request=10)
        assert b.metadata[LINES_KEY] == "70" and b.request_counts.total == 7
        b = client.batches.cancel(b.id)
        b = client.batches.wait(b.id, poll_interval=0.2, timeout=60)
        assert b.status == "cancelled"
        with pytest.raises(BatchFailed, match=r"was cancelled: \d+ of 70 lines were translated; nothing written"):
            client.batches.download(b.id, tmp_path / "out.txt", source=src)
        assert not (tmp_path / "out.txt").exists()
        missing = client.batches.download(b.id, tmp_path / "out.txt", source=src, partial=True)
        assert len(missing) >= 1  # what was not done is reported, not silently blank

        done = client.batches.create_from_file(src, kind="text", sentences_per_request=32)
        done = client.batches.wait(done.id, poll_interval=0.2, timeout=120)
    from batchmt._batch_cli import _summary

    summary = _summary(done)
    assert summary["lines"] == {"total": 70, "translated": 70}  # not 3 requests of 32 lines
    assert summary["request_counts"]["total"] == 3


def test_the_bar_counts_lines(slow_gateway, tmp_path):
    from batchmt.batches import _Bar

    src = tmp_path / "small.txt"
    src.write_text("A line.\nAnother line.\nA third.\n", encoding="utf-8")
    with batchmt.Client(base_url=slow_gateway, timeout=60) as client:
        b = client.batches.create_from_file(src, kind="text", sentences_per_request=2)
        b = client.batches.wait(b.id, poll_interval=0.2, timeout=60)
    bar = _Bar(True, b.id)
    bar.update(b)
    bar.bar.fp = io.StringIO()
    assert (bar.bar.n, bar.bar.total, bar.bar.unit) == (3, 3, "line")
    bar.close()
