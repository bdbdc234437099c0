"""The SDK and CLI against the real gateway with the real engine.

Uses two fixtures that tests/conftest.py provides:

* ``gateway_app``: a started FastAPI ASGI app with the real engine (used through
  ``httpx.ASGITransport(app=gateway_app)`` and base URL ``http://gateway``);
* ``gateway_url``: ``"http://127.0.0.1:PORT"`` of a real uvicorn server.

The evaluation test reads a test set at run time from ``$BATCHMT_TEST_DATA`` (default
``<repo>/../shared/data/newstest2021_ende``; files ``src.en`` and ``ref.de``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

import batchmt
from batchmt import cli

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 600.0  # CPU inference

# Our own sentences; each carries a distinct number so that order can be checked.
NUMBERED = [
    "The museum opened in 1987.",
    "Room 204 is on the second floor.",
    "The train leaves at 7 o'clock.",
    "She bought 35 apples at the market.",
    "The bridge is 800 metres long.",
]
NUMBERS = ["1987", "204", "7", "35", "800"]


def test_sync_client_translates_three_sentences(gateway_url):
    sources = ["The museum is closed on Mondays.", "I have lost my keys again.", "The weather is nice today."]
    with batchmt.Client(base_url=gateway_url, timeout=TIMEOUT) as client:
        result = client.translate(sources)
    assert len(result) == 3
    assert result.ok, result.failures
    for source, text in zip(sources, result.texts):
        assert isinstance(text, str) and text.strip()
        assert text != source
    assert result.signature and result.model
    assert result.usage.sentences == 3 and result.usage.completion_tokens > 0


async def test_async_client_chunks_over_asgi_and_keeps_order(gateway_app):
    transport = httpx.ASGITransport(app=gateway_app)
    async with batchmt.AsyncClient(
        base_url="http://gateway", transport=transport, timeout=TIMEOUT, chunk_size=2, max_concurrency=2
    ) as client:
        result = await client.translate(NUMBERED)
    assert len(result) == len(NUMBERED)
    assert len(result.ids) == 3  # 2 + 2 + 1
    assert result.usage.sentences == len(NUMBERED)
    own = 0
    for i, (source, text) in enumerate(zip(NUMBERED, result.texts)):
        if text is None:  # a failed slot is visible, and stays in its place
            continue
        assert text != source
        found = set(re.findall(r"\d+", text))
        others = {n for j, n in enumerate(NUMBERS) if j != i} - {NUMBERS[i]}
        # A translation never carries another sentence's number: the order was kept.
        assert not (found & others and NUMBERS[i] not in found), (i, source, text)
        own += NUMBERS[i] in found
    assert own >= 3, result.texts


def test_empty_text_is_rejected_with_its_code(gateway_url):
    with batchmt.Client(base_url=gateway_url, timeout=TIMEOUT) as client:
        with pytest.raises(batchmt.UnprocessableEntityError) as info:
            client.translate(["Hello.", ""])
    assert info.value.status == 422
    assert info.value.code == "empty_text"
    assert info.value.param == "texts[1]"


def test_health_and_info(gateway_url):
    with batchmt.Client(base_url=gateway_url, timeout=TIMEOUT) as client:
        health = client.health()
        info = client.info()
    assert health.live and health.ready
    assert ("en", "de") in info.language_pairs
    assert info.limits.max_sentences_per_request >= 1


def test_cli_eval_prints_bleu_and_chrf(gateway_url, tmp_path, capsys):
    data = Path(os.environ.get("BATCHMT_TEST_DATA", REPO.parent / "shared" / "data" / "newstest2021_ende"))
    src, ref = data / "src.en", data / "ref.de"
    if not (src.is_file() and ref.is_file()):
        pytest.skip(f"test set not found: {src}, {ref} (set BATCHMT_TEST_DATA)")
    hyp = tmp_path / "hyp.de"
    code = cli.main(
        [
            "--base-url",
            gateway_url,
            "--timeout",
            str(TIMEOUT),
            "eval",
            "--src",
            str(src),
            "--ref",
            str(ref),
            "--limit",
            "8",
            "--hyp-out",
            str(hyp),
            "--no-progress",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    assert re.search(r"^BLEU\|nrefs:1\|.* = \d+\.\d+", out, re.M), out
    assert re.search(r"^chrF2\|nrefs:1\|.* = \d+\.\d+", out, re.M), out
    assert "sentences: 8" in out
    assert len(hyp.read_text(encoding="utf-8").splitlines()) == 8


def test_cli_health(gateway_url, capsys):
    assert cli.main(["--base-url", gateway_url, "health"]) == 0
    assert "live, ready" in capsys.readouterr().out
