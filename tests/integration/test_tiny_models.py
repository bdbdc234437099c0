"""Tiny Llama and Falcon through the real gateway on the real vLLM-CPU engine.

The test writes each model's config (``transformers``' ``LlamaConfig`` / ``FalconConfig``: 2 layers, hidden size
128, 2 heads, head_dim 64) and a real tokenizer (the embedded Gemma's) into a temporary folder; vLLM builds the
architecture and fills it with random weights (``--engine-arg load_format=dummy``): no weights are shipped or
downloaded. The Llama gets a ChatML chat template, so its prompts take the chat form; the Falcon keeps the
completion form. Their output is noise, which is the point: the parser must flag it, every slot must come back
in order (failed or repaired in its own slot, nothing lost or misplaced), and ``/metrics`` must show it.

One engine at a time: the module-scoped fixture is parametrized, so pytest runs every Llama test, shuts that
engine down, then starts the Falcon one. Eager mode, a 1 GiB KV cache and a short context keep it cheap.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import httpx
import pytest

from helpers import CHATML, write_tiny_model

pytestmark = [pytest.mark.engine, pytest.mark.slow]

START_TIMEOUT = float(os.environ.get("BATCHMT_TEST_ENGINE_TIMEOUT", "900"))
# written for this test
SENTENCES = [
    "The garden gate squeaks every time the wind blows.",
    "We ordered soup and fresh bread.",
    "The library closes early on Fridays.",
    "My brother repairs old bicycles.",
    "The concert was postponed until next spring.",
    "Please switch off the lights when you leave.",
]
CALIBRATION = [
    ("The tram stops right outside the hotel.", "Die Straßenbahn hält direkt vor dem Hotel."),
    ("She forgot her umbrella at the office.", "Sie hat ihren Regenschirm im Büro vergessen."),
    ("The bridge will be repaired in the summer.", "Die Brücke wird im Sommer repariert."),
    ("Two cats were sleeping on the sofa.", "Zwei Katzen schliefen auf dem Sofa."),
]


@pytest.fixture(scope="module", params=["llama", "falcon"])
async def tiny(request, tmp_path_factory):
    """(kind, app) for a gateway on the tiny model; the engine lives for this parameter's tests only."""
    from batchmt_server.http.app import create_app
    from batchmt_server.settings import Settings

    kind = request.param
    root = tmp_path_factory.mktemp(f"tiny-{kind}")
    folder = root / "model"
    write_tiny_model(kind, folder)
    cal = root / "calibration.tsv"
    cal.write_text("".join(f"{s}\t{r}\n" for s, r in CALIBRATION), encoding="utf-8")
    settings = Settings(
        model=str(folder),
        served_model_name=f"tiny-{kind}",
        engine_args={"load_format": "dummy"},
        dtype="float32",
        enforce_eager=True,
        max_model_len=2048,
        max_num_seqs=16,
        cpu_kvcache_gib=1,
        calibration="auto",
        calibration_data=cal,
        cache_dir=root / "cache",
        data_dir=root / "data",
        max_sentences_per_prompt=4,
        pack_policy="fixed",
        max_wait_ms=50.0,
        max_prompts_in_flight=8,
        translation_memory_size=0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        gw = app.state.gateway
        t0 = time.monotonic()
        while not gw.ready.is_set():
            if gw.boot_error:
                pytest.fail(f"tiny {kind} failed to start: {gw.boot_error}")
            if time.monotonic() - t0 > START_TIMEOUT:
                pytest.fail(f"tiny {kind} did not start in time")
            await asyncio.sleep(0.5)
        yield kind, app


async def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tiny", timeout=600)


async def test_prompt_form_and_calibration(tiny) -> None:
    kind, app = tiny
    gw = app.state.gateway
    async with await _client(app) as client:
        info = (await client.get("/v1/info")).json()
    want = "chat" if kind == "llama" else "completion"
    assert f"|form:{want}|" in info["signature"] and gw.template.form == want
    if kind == "llama":  # the BatchPrompt went through the chat template: few-shot turns, assistant turn prefilled
        prompt = gw.template.render(["A test."])
        assert prompt.count("<|im_start|>assistant\n") == len(gw.template.examples) + 1
        # the prefill of the calibrated template: its echo and label, or the label alone (en-de-list)
        assert prompt.endswith("<|im_start|>assistant\n" + gw.template.base._pair(1, "A test.", None))
        assert prompt.endswith("German 1:")
    # calibration ran on the real engine; noise never keeps quality packed
    assert gw.calibration is not None and gw.calibration.pack_limit == 1
    assert "|cal:1|" in info["signature"]


async def test_every_slot_answers_in_order_and_noise_is_flagged(tiny) -> None:
    kind, app = tiny
    gw = app.state.gateway
    before = gw.stats.snapshot()
    async with await _client(app) as client:
        r = await client.post("/v1/translate", json={"sentences": SENTENCES})
        assert r.status_code == 200, r.text
        body = r.json()
        metrics = (await client.get("/metrics")).text
    slots = body["translations"]
    assert len(slots) == len(SENTENCES)  # nothing lost
    for i, slot in enumerate(slots):
        if slot["status"] == "failed":  # failed in its own slot, saying why
            assert slot["text"] is None and slot["error"]["code"] and slot["error"]["message"]
            continue
        # repaired: a one-sentence answer, never another input (misplaced) nor empty; "suspect" says why it is
        # doubtful (noise that ran into its token limit, copied or ran on), "partial" which segment failed
        assert slot["status"] in ("ok", "suspect", "partial") and slot["text"].strip()
        assert slot["text"] not in SENTENCES[:i] + SENTENCES[i + 1 :]
        if slot["status"] == "suspect":
            assert slot["suspect_segments"] and all(x["reason"] for x in slot["suspect_segments"])
        if slot["status"] == "partial":
            assert slot["failed_segments"] and all(x["code"] for x in slot["failed_segments"])
    after = gw.stats.snapshot()
    flagged = sum(after.flagged_slots.values()) - sum(before.flagged_slots.values())
    resent = sum(after.resent_sentences.values()) - sum(before.resent_sentences.values())
    assert flagged >= 1  # the noise was flagged (re-sent in smaller prompts when packed: calibration says 1)
    assert resent >= 0
    # /metrics shows it: flagged slots and re-sends by reason, failed sentences, the engine's own metrics
    repairs = sum(float(v) for v in re.findall(r"^batchmt_repairs_total\{[^}]*\} ([0-9.e+]+)$", metrics, re.M))
    assert repairs >= flagged
    if any(s["status"] == "suspect" for s in slots):
        assert re.search(r"^batchmt_suspect_sentences_total\{[^}]*\} [1-9]", metrics, re.M)
    if resent:
        assert re.search(r"^batchmt_retries_total\{[^}]*\} [1-9]", metrics, re.M)
    if any(s["status"] == "failed" for s in slots):
        assert re.search(r'^batchmt_sentences_total\{[^}]*outcome="failed"[^}]*\} [1-9]', metrics, re.M)
    assert "vllm:" in metrics


async def test_prefix_cache_hits(tiny) -> None:
    kind, app = tiny
    gw = app.state.gateway
    async with await _client(app) as client:
        r = await client.post("/v1/translate", json={"sentences": ["Bring a warm coat tomorrow."]})
        metrics = (await client.get("/metrics")).text
    usage = r.json()["usage"]
    # the head (instruction and few-shot turns of the template calibration chose) is byte-identical, in the chat
    # form too: its whole 32-token blocks come from the cache
    head = gw.engine.count_tokens(gw.template.prefix)
    assert usage["cached_prompt_tokens"] >= max(32, (head // 32 - 1) * 32)
    cached = float(re.search(r"^batchmt_cached_prompt_tokens_total ([0-9.e+]+)$", metrics, re.M).group(1))
    assert cached > 0


async def test_http_engine_gets_the_chat_form_rendered_by_the_gateway(vllm_server: str, tmp_path: Path) -> None:
    """An OpenAI-compatible engine (the session's real vLLM api_server) gets the chat form as plain
    ``/v1/completions`` text, rendered by the gateway with the tokenizer named by ``--tokenizer``: the same code
    path as the in-process engine, and the byte-identical head hits the server's prefix cache."""
    from transformers import AutoTokenizer

    from batchmt_server.http.app import create_app
    from batchmt_server.models.embedded import prepare_embedded_model
    from batchmt_server.settings import Settings

    tok = AutoTokenizer.from_pretrained(str(prepare_embedded_model(Settings().cache_dir)))
    tok.chat_template = CHATML
    tok.save_pretrained(tmp_path / "tokenizer")
    settings = Settings(
        engine_url=vllm_server,
        tokenizer=str(tmp_path / "tokenizer"),
        calibration="off",
        data_dir=tmp_path / "data",
        max_sentences_per_prompt=1,
        translation_memory_size=0,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        gw = app.state.gateway
        t0 = time.monotonic()
        while not gw.ready.is_set():
            assert not gw.boot_error, gw.boot_error
            assert time.monotonic() - t0 < START_TIMEOUT
            await asyncio.sleep(0.2)
        assert gw.template.form == "chat" and "|form:chat|" in gw.signature
        usages = []
        async with await _client(app) as client:
            for sentence in SENTENCES[:3]:
                r = await client.post("/v1/translate", json={"sentences": [sentence]})
                assert r.status_code == 200, r.text
                body = r.json()
                assert len(body["translations"]) == 1 and "|form:chat|" in body["signature"]
                usages.append(body["usage"])
        # once the head is in the server's cache, later prompts take it from there
        later = usages[1:]
        assert sum(u["cached_prompt_tokens"] for u in later) >= 0.5 * sum(u["prompt_tokens"] for u in later) > 0
