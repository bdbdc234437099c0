"""Client basics: requests, options and env fallback, the result object, health and info."""

from __future__ import annotations

import json

import httpx
import pytest
from sdk_fakes import FakeServer, error_response

import batchmt
from batchmt import Translation, TranslationError, TranslationResult, Usage


def test_translate_sends_the_contract_and_returns_texts_in_order(fake_server, mt_client):
    result = mt_client.translate(["One.", "Two.", "Three."])
    assert result.texts == ["DE<One.>", "DE<Two.>", "DE<Three.>"]
    assert list(result) == result.texts and len(result) == 3 and result[1] == "DE<Two.>"
    assert result == ["DE<One.>", "DE<Two.>", "DE<Three.>"]
    assert result.model == "fake" and result.signature == fake_server.signature
    assert result.ids == ["tr-1"]
    assert result.usage.sentences == 3 and result.usage.completion_tokens == 9
    assert result.usage.extra == {"future_field": 1, "future_label": "x"}  # unknown fields are kept
    [request] = [r for r in fake_server.requests if r.url.path == "/v1/translate"]
    assert request.method == "POST" and str(request.url) == "http://test/v1/translate"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("batchmt-python/")
    assert "authorization" not in request.headers
    # Options the caller did not set are not sent (the server's defaults apply).
    assert json.loads(request.content) == {
        "texts": ["One.", "Two.", "Three."],
        "source_lang": "en",
        "target_lang": "de",
    }


def test_language_arguments_are_sent(fake_server, mt_client):
    mt_client.translate(["Hi."], source_lang="en", target_lang="fr")
    assert fake_server.translate_bodies()[-1]["target_lang"] == "fr"


def test_failed_slots_are_visible_not_dropped(mt_client):
    result = mt_client.translate(["Good.", "This will FAIL.", "Fine."])
    assert result.texts == ["DE<Good.>", None, "DE<Fine.>"]
    assert not result.ok
    [(index, failed)] = result.failures
    assert index == 1 and failed.status == "failed" and failed.text is None
    assert failed.error == TranslationError(code="unparseable_output", message="bad output")
    with pytest.raises(batchmt.TranslationFailed) as info:
        result.raise_for_failures()
    assert info.value.failures == [(1, failed)] and info.value.result is result
    assert "1 of 3 texts were not fully translated" in str(info.value) and "texts[1]" in str(info.value)


def test_raise_for_failures_returns_the_result_when_all_ok(mt_client):
    result = mt_client.translate(["A.", "B."])
    assert result.ok and result.failures == []
    assert result.raise_for_failures() is result
    assert result.raise_for_failures().texts == ["DE<A.>", "DE<B.>"]


def test_result_object_semantics():
    ok = Translation(text="Hallo", status="ok")
    bad = Translation(text=None, status="failed", error=TranslationError("x", "y"))
    r = TranslationResult([ok, bad], usage=Usage(sentences=2), model="m", signature="s", ids=["a"])
    assert r[0] == "Hallo" and r[1] is None and r[:1] == ["Hallo"] and r[-1] is None
    assert r.translations == [ok, bad]
    assert "1 not ok" in repr(r)
    assert r != ["Hallo", "Hallo"]
    merged = TranslationResult.concat([r, TranslationResult([ok], usage=Usage(sentences=1, extra={"k": 2}), ids=["b"])])
    assert merged.texts == ["Hallo", None, "Hallo"] and merged.ids == ["a", "b"]
    assert merged.usage.sentences == 3 and merged.usage.extra == {"k": 2}
    assert (Usage(prompt_tokens=2, completion_tokens=3) + Usage(prompt_tokens=1)).total_tokens == 6


def test_empty_list_returns_empty_result_without_a_request(fake_server, mt_client):
    result = mt_client.translate([])
    assert len(result) == 0 and result.ok and result.texts == []
    assert fake_server.requests == []


def test_a_single_string_is_one_text_as_in_deepl(fake_server, mt_client):
    result = mt_client.translate("Hello world.")
    assert result.texts == ["DE<Hello world.>"] and len(result) == 1 and result.usage.texts == 1
    assert fake_server.translate_bodies()[-1]["texts"] == ["Hello world."]  # one text, not 12 characters
    n = len(fake_server.requests)
    with pytest.raises(TypeError, match="not bytes"):
        mt_client.translate(b"Hello")
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        mt_client.translate(["ok", 3])
    assert len(fake_server.requests) == n


async def test_the_async_client_takes_a_single_string_too(make_async_mt_client):
    async with make_async_mt_client() as client:
        result = await client.translate("Hello world.")
    assert result.texts == ["DE<Hello world.>"]


def test_generators_are_accepted(mt_client):
    assert mt_client.translate(s for s in ["A.", "B."]).texts == ["DE<A.>", "DE<B.>"]


def test_api_key_is_sent_as_bearer(fake_server, make_mt_client):
    make_mt_client(api_key="s3cret").translate(["Hi."])
    assert fake_server.requests[-1].headers["authorization"] == "Bearer s3cret"


def test_env_fallback_for_base_url_and_api_key(monkeypatch, fake_server):
    monkeypatch.setenv("BATCHMT_BASE_URL", "http://from-env:9000/")
    monkeypatch.setenv("BATCHMT_API_KEY", "env-key")
    with batchmt.Client(transport=fake_server.transport()) as client:
        assert client.base_url == "http://from-env:9000" and client.api_key == "env-key"
        client.translate(["Hi."])
    request = fake_server.requests[-1]
    assert str(request.url) == "http://from-env:9000/v1/translate"
    assert request.headers["authorization"] == "Bearer env-key"


def test_arguments_win_over_env(monkeypatch):
    monkeypatch.setenv("BATCHMT_BASE_URL", "http://from-env:9000")
    monkeypatch.setenv("BATCHMT_API_KEY", "env-key")
    client = batchmt.Client(base_url="http://arg:1", api_key="arg-key")
    assert (client.base_url, client.api_key) == ("http://arg:1", "arg-key")
    client.close()


def test_defaults_without_env():
    with batchmt.Client() as client:
        assert client.base_url == "http://127.0.0.1:8000" == batchmt.DEFAULT_BASE_URL
        assert client.api_key is None
        assert client.max_retries == batchmt.DEFAULT_MAX_RETRIES
        assert "authorization" not in {k.lower() for k in client.headers}


def test_base_url_with_path_prefix(fake_server, make_mt_client):
    fake_server.script("/batchmt/v1/translate", fake_server._translate)
    assert make_mt_client(base_url="http://proxy/batchmt/").translate(["Hi."]).texts == ["DE<Hi.>"]
    assert str(fake_server.requests[-1].url) == "http://proxy/batchmt/v1/translate"


@pytest.mark.parametrize("kwargs", [{"base_url": "localhost:8000"}, {"max_retries": -1}, {"chunk_size": 0}])
def test_invalid_options_raise(kwargs):
    with pytest.raises(ValueError):
        batchmt.Client(**kwargs)


def test_timeout_option_reaches_the_request(fake_server, make_mt_client):
    make_mt_client(timeout=12.5).translate(["Hi."])
    assert fake_server.requests[-1].extensions["timeout"]["read"] == 12.5


def test_injected_http_client_is_used_and_not_closed(fake_server):
    http = httpx.Client(transport=fake_server.transport())
    with batchmt.Client(base_url="http://test", http_client=http) as client:
        assert client.translate(["Hi."]).texts == ["DE<Hi.>"]
    assert not http.is_closed  # the caller owns it
    http.close()


def test_own_http_client_is_closed(fake_server):
    client = batchmt.Client(base_url="http://test", transport=fake_server.transport())
    with client:
        pass
    assert client._client.is_closed


def test_http_client_and_transport_are_exclusive(fake_server):
    with pytest.raises(ValueError):
        batchmt.Client(http_client=httpx.Client(), transport=fake_server.transport())


def test_health_ready(fake_server, mt_client):
    health = mt_client.health()
    assert health.live and health.ready and health.status == "ready" and bool(health)
    assert fake_server.paths() == ["/healthz", "/readyz"]


def test_health_not_ready_is_a_state_not_an_error(fake_server, mt_client, recorded_sleeps):
    fake_server.ready = False
    health = mt_client.health()
    assert health.live and not health.ready and not health
    assert health.status == "not_ready" and health.message == "engine is loading"
    assert recorded_sleeps == []  # health checks are not retried


def test_health_down(fake_server, mt_client):
    fake_server.script("/healthz", httpx.Response(500, text="boom"))
    health = mt_client.health()
    assert not health.live and not health.ready and health.status == "down"
    assert fake_server.paths() == ["/healthz"]


def test_health_unreachable_raises(fake_server, mt_client):
    fake_server.script("/healthz", httpx.ConnectError("refused"))
    with pytest.raises(batchmt.APIConnectionError):
        mt_client.health()


def test_info(fake_server, mt_client):
    info = mt_client.info()
    assert info.model == "fake" and info.version == "0.1.0" and info.signature == fake_server.signature
    assert info.language_pairs == [("en", "de")]
    assert info.limits.max_sentences_per_request == 128 and info.limits.max_sentence_chars == 1000
    assert info.raw["model"] == "fake"


def test_info_error_raises(fake_server, mt_client):
    fake_server.info_status = 404
    with pytest.raises(batchmt.NotFoundError):
        mt_client.info()


async def test_async_client_translate_health_info(fake_server, make_async_mt_client):
    async with make_async_mt_client(api_key="k") as client:
        result = await client.translate(["A.", "FAIL here", "C."])
        health = await client.health()
        info = await client.info()
    assert result.texts == ["DE<A.>", None, "DE<C.>"]
    assert [i for i, _ in result.failures] == [1]
    assert health.ready and info.limits.max_sentences_per_request == 128
    assert fake_server.requests[0].headers["authorization"] == "Bearer k"
    assert client._client.is_closed


async def test_async_injected_http_client_not_closed():
    server = FakeServer()
    http = httpx.AsyncClient(transport=server.async_transport())
    async with batchmt.AsyncClient(base_url="http://test", http_client=http) as client:
        assert (await client.translate(["x"])).texts == ["DE<x>"]
    assert not http.is_closed
    await http.aclose()


async def test_async_error_mapping(fake_server, make_async_mt_client):
    fake_server.script("/v1/translate", error_response(413, "sentence_too_long", "too long", "sentences[0]"))
    async with make_async_mt_client() as client:
        with pytest.raises(batchmt.PayloadTooLargeError) as info:
            await client.translate(["x" * 5])
    assert info.value.code == "sentence_too_long" and info.value.param == "sentences[0]"
