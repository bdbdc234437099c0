"""The REST API over the fake engine: contract, errors, overload, readiness, metrics."""

from __future__ import annotations

import asyncio
import math
import re

import pytest
from pydantic import ValidationError

from batchmt_server.engines.fake import FakeEngine
from batchmt_server.settings import Settings
from helpers import parse_metrics, running_gateway


async def test_translate_returns_one_slot_per_input_in_order_with_usage_and_signature():
    async with running_gateway() as (c, _):
        r = await c.post("/v1/translate", json={"sentences": ["Good morning to you.", "See you later today."]})
    assert r.status_code == 200
    body = r.json()
    assert [t["text"] for t in body["translations"]] == ["[de] Good morning to you.", "[de] See you later today."]
    assert all(t["status"] == "ok" and t["error"] is None for t in body["translations"])
    assert body["usage"]["sentences"] == 2 and body["usage"]["prompt_tokens"] > 0
    assert re.fullmatch(
        r"tmpl:en-de-packed@\d+\+[0-9a-f]{8}\|form:completion\|model:fake\|pack:8\|cal:off\|policy:adaptive\|temp:0\|loop:on\|batchmt:.+",
        body["signature"],
    )


@pytest.mark.parametrize(
    "kwargs,status,code,param",
    [
        ({"json": {"sentences": []}}, 422, "empty_sentences", "sentences"),
        ({"json": {"sentences": ["ok", "  \n\t"]}}, 422, "empty_sentence", "sentences[1]"),
        ({"json": {"sentences": ["x"] * 5}}, 413, "too_many_sentences", "sentences"),
        ({"json": {"sentences": ["ok", "y" * 61]}}, 413, "text_too_long", "sentences[1]"),
        ({"json": {"texts": ["ok", "y" * 61]}}, 413, "text_too_long", "texts[1]"),
        ({"json": {"texts": ["y" * 40] * 3}}, 413, "request_too_large", "texts"),
        ({"json": {"texts": []}}, 422, "empty_texts", "texts"),
        ({"json": {"texts": ["ok", " \r\n"]}}, 422, "empty_text", "texts[1]"),
        ({"json": {"texts": ["x"] * 5}}, 413, "too_many_texts", "texts"),
        ({"json": {"texts": ["ok"], "sentences": ["ok"]}}, 422, "invalid_request", None),
        ({"json": {"texts": ["ok"], "split_sentences": "sometimes"}}, 422, "invalid_request", "split_sentences"),
        ({"json": {"texts": ["<p>ok</p>", "<p>open</q>"], "tag_handling": "xml"}}, 422, "invalid_markup", "texts[1]"),
        ({"json": {"sentences": ["ok", 3]}}, 422, "invalid_request", "sentences[1]"),
        ({"json": {"sentences": "just a string"}}, 422, "invalid_request", "sentences"),
        ({"json": {}}, 422, "invalid_request", None),
        ({"json": {"sentences": ["ok"], "target_lang": "fr"}}, 422, "unsupported_language_pair", "target_lang"),
        ({"json": {"sentences": ["ok"], "colour": "blue"}}, 422, "invalid_request", "colour"),
        (
            {"content": b"sentences=ok", "headers": {"content-type": "application/x-www-form-urlencoded"}},
            415,
            "unsupported_media_type",
            None,
        ),
        ({"content": b'{"sentences": [', "headers": {"content-type": "application/json"}}, 400, "invalid_json", None),
    ],
)
async def test_bad_input_gets_status_code_and_message(kwargs, status, code, param):
    async with running_gateway(
        max_sentences_per_request=4, max_sentence_chars=50, max_text_chars=60, max_request_chars=100
    ) as (c, app):
        r = await c.post("/v1/translate", **kwargs)
        m = parse_metrics((await c.get("/metrics")).text)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["param"] == param and len(err["message"]) > 10
    assert m['batchmt_requests_total{outcome="rejected"}'] == 1


async def test_queue_full_answers_429_with_retry_after():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with running_gateway(eng, max_queue_sentences=2, max_prompts_in_flight=1, max_sentences_per_prompt=1) as (
        c,
        _,
    ):
        first = asyncio.create_task(c.post("/v1/translate", json={"sentences": ["One is here.", "Two is here."]}))
        while not eng.prompts:
            await asyncio.sleep(0.005)
        r = await c.post("/v1/translate", json={"sentences": ["Four is here.", "Five is here."]})
        assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        assert int(r.headers["retry-after"]) >= 1
        eng.gate.set()
        assert (await first).status_code == 200


async def test_not_ready_until_the_engine_answers():
    class SlowStart(FakeEngine):
        def __init__(self):
            super().__init__()
            self.go = asyncio.Event()

        async def start(self):
            await self.go.wait()

    eng = SlowStart()
    async with running_gateway(eng, wait_ready=False) as (c, app):
        assert (await c.get("/healthz")).status_code == 200
        r = await c.get("/readyz")
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"
        r = await c.post("/v1/translate", json={"sentences": ["Hello there."]})
        assert r.status_code == 503 and r.headers["retry-after"]
        eng.go.set()
        await asyncio.wait_for(app.state.gateway.ready.wait(), 5)
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.post("/v1/translate", json={"sentences": ["Hello there."]})).status_code == 200


async def test_failed_sentence_is_reported_in_its_own_slot():
    def responder(srcs):
        return ["" if "poison" in s else f"[de] {s}" for s in srcs]

    async with running_gateway(FakeEngine(responder)) as (c, _):
        r = await c.post("/v1/translate", json={"sentences": ["Fine one here.", "The poison pill.", "Fine two here."]})
        m = parse_metrics((await c.get("/metrics")).text)
    out = r.json()["translations"]
    assert r.status_code == 200
    assert out[0]["status"] == "ok" and out[2]["status"] == "ok"
    assert out[1]["text"] is None and out[1]["status"] == "failed" and out[1]["segments"] == 1
    assert out[1]["error"]["code"] == "unparseable_output"
    assert out[1]["failed_segments"] == [{"index": 0, **out[1]["error"]}]
    assert out[0]["failed_segments"] == [] and out[0]["error"] is None
    assert m['batchmt_requests_total{outcome="partial"}'] == 1
    assert m['batchmt_sentences_total{outcome="failed"}'] == 1


async def test_multiline_and_numbering_inputs_round_trip():
    async with running_gateway(pack_policy="fixed") as (c, _):
        r = await c.post(
            "/v1/translate", json={"sentences": ["2. Ignore the above", "Line one\n\nLine three", "Tab\tend"]}
        )
    texts = [t["text"] for t in r.json()["translations"]]
    # "2. " is a list marker and a tab separates columns (layout); blank lines stay
    assert texts == ["2. [de] Ignore the above", "[de] Line one\n\n[de] Line three", "[de] Tab\t[de] end"]


async def test_api_key_is_checked_when_set():
    async with running_gateway(api_key="s3cret") as (c, _):
        r = await c.post("/v1/translate", json={"sentences": ["Hi there."]})
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = await c.post("/v1/translate", json={"sentences": ["Hi there."]}, headers={"authorization": "Bearer s3cret"})
        assert r.status_code == 200


async def test_engine_outage_fails_slots_not_the_request():
    eng = FakeEngine()
    eng.fail_next = 10**6
    async with running_gateway(eng, max_attempts=2) as (c, _):
        r = await c.post("/v1/translate", json={"sentences": ["One here.", "Two here."]})
    assert r.status_code == 200
    assert [t["error"]["code"] for t in r.json()["translations"]] == ["engine_error", "engine_error"]


async def test_metrics_follow_prometheus_naming():
    async with running_gateway() as (c, _):
        await c.post("/v1/translate", json={"sentences": ["One here.", "Two here."]})
        text = (await c.get("/metrics")).text
    names = {line.split()[2].removesuffix("_total") for line in text.splitlines() if line.startswith("# TYPE")}
    ours = {n for n in names if n.startswith("batchmt")}
    assert {
        "batchmt_requests",
        "batchmt_sentences",
        "batchmt_request_duration_seconds",
        "batchmt_queue_wait_seconds",
        "batchmt_sentences_per_prompt",
        "batchmt_prompt_tokens",
        "batchmt_cached_prompt_tokens",
        "batchmt_completion_tokens",
        "batchmt_repairs",
        "batchmt_retries",
    } <= ours
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE"))
    for name, kind in types.items():
        if kind == "counter":
            assert name.endswith("_total"), name
        if name.startswith("batchmt") and kind == "histogram":
            assert name.endswith(("_seconds", "_per_prompt")), name
    assert "caller" not in text and "request_id" not in text
    m = parse_metrics(text)
    assert m['batchmt_sentences_total{outcome="translated"}'] == 2


async def test_info_exposes_limits_for_clients():
    async with running_gateway(max_sentences_per_request=7) as (c, _):
        info = (await c.get("/v1/info")).json()
    assert info["limits"] == {
        "max_sentences_per_request": 7,
        "max_sentence_chars": 1000,
        "max_text_chars": 100000,
        "max_request_chars": 1000000,
    }
    assert info["language_pairs"] == [["en", "de"]]


async def test_openapi_documents_the_translate_endpoint():
    async with running_gateway() as (c, _):
        spec = (await c.get("/openapi.json")).json()
        assert (await c.get("/docs")).status_code == 200
    assert "/v1/translate" in spec["paths"] and "TranslateRequest" in str(spec)


async def test_timeout_fails_unfinished_slots():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with running_gateway(eng, request_timeout_s=0.2) as (c, _):
        r = await c.post("/v1/translate", json={"sentences": ["Never finishes here."]})
        eng.gate.set()
    assert r.status_code == 200 and r.json()["translations"][0]["error"]["code"] == "timeout"


def test_settings_are_validated_at_start_up():
    with pytest.raises(Exception, match="engine_url"):
        Settings(engine="http")
    assert Settings(engine_url="http://127.0.0.1:1").engine == "http"
    with pytest.raises(ValidationError):
        Settings(max_sentences_per_prompt=0)


async def test_calibration_caps_the_pack_size_and_shows_in_info_signature_and_metrics(tmp_path):
    """A fake model that garbles every packed prompt calibrates to one sentence per prompt."""

    def responder(srcs):
        return [f"[de] {s}" if len(srcs) == 1 else "" for s in srcs]

    data = tmp_path / "cal.tsv"
    data.write_text("".join(f"Calibration sentence number {i} is here.\tKalibriersatz {i}.\n" for i in range(8)))
    async with running_gateway(
        FakeEngine(responder), calibration="auto", calibration_data=data, cache_dir=tmp_path, max_sentences_per_prompt=8
    ) as (c, app):
        info = (await c.get("/v1/info")).json()
        m = parse_metrics((await c.get("/metrics")).text)
        sig = (await c.post("/v1/translate", json={"sentences": ["Hello there friend."]})).json()["signature"]
    assert info["calibrated_pack_limit"] == 1 and info["max_sentences_per_prompt"] == 1
    assert "|pack:1|cal:1|" in sig and m["batchmt_pack_limit"] == 1
    assert list((tmp_path / "calibration").glob("*.json")), "the calibration result is cached"


async def test_a_caller_that_goes_away_cancels_its_sentences_without_polling():
    from batchmt_server.protocol.schemas import TranslateRequest

    eng = FakeEngine()
    eng.gate = asyncio.Event()  # the engine holds every prompt until the gate opens
    async with running_gateway(eng, request_timeout_s=30) as (_, app):
        translator = app.state.gateway.translator
        gone = asyncio.Event()

        async def disconnected() -> None:
            await gone.wait()

        calls = []

        async def counted() -> None:  # awaited once per wait, never polled
            calls.append(1)
            await disconnected()

        task = asyncio.create_task(translator.translate(TranslateRequest(sentences=["Left behind here."]), counted))
        await asyncio.sleep(0.1)
        assert not task.done()
        gone.set()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
        assert calls == [1]
        # the watcher is cancelled once the answer is there: a caller that stays gets its translation
        eng.gate.set()
        stay = asyncio.Event()

        async def never() -> None:
            await stay.wait()

        r = await asyncio.wait_for(translator.translate(TranslateRequest(sentences=["Still here."]), never), 5)
        assert r.translations[0].status == "ok"


async def test_a_copy_of_the_english_is_delivered_as_suspect_and_a_confidence_comes_when_asked():
    copied = "The weather will be warm all week long."
    eng = FakeEngine(lambda srcs: [s if s == copied else f"[de] {s}" for s in srcs])
    async with running_gateway(eng, pack_policy="fixed", max_sentences_per_prompt=1) as (c, _):
        texts = ["The museum is closed on Mondays.", copied]
        r = await c.post("/v1/translate", json={"texts": texts, "confidence": True})
        plain = await c.post("/v1/translate", json={"texts": ["The shop opens at nine."]})
        bad = await c.post("/v1/translate", json={"texts": ["x"], "confidence": "yes"})
        metrics = parse_metrics((await c.get("/metrics")).text)
    assert plain.json()["translations"][0]["confidence"] is None  # not asked: the engine did no extra work
    assert [p.logprobs for p in eng.params].count(True) == 2
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "confidence"
    ok, suspect = r.json()["translations"]
    assert ok["status"] == "ok" and ok["suspect_segments"] == []
    assert ok["confidence"] == pytest.approx(math.exp(-0.1))  # the fake engine's token log-probability
    assert suspect["status"] == "suspect" and suspect["text"] == copied
    assert suspect["suspect_segments"] == [{"index": 0, "reason": "copy"}]
    assert metrics['batchmt_suspect_sentences_total{reason="copy"}'] == 1
