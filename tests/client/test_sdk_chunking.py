"""Lists longer than the server's limit: chunking, order, usage, /v1/info caching, concurrency."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from sdk_fakes import error_response

import batchmt
from batchmt._base_client import DEFAULT_MAX_SENTENCES_PER_REQUEST

SENTENCES = [f"Sentence number {i}." for i in range(23)]
EXPECTED = [f"DE<Sentence number {i}.>" for i in range(23)]


def test_sync_chunks_by_the_server_limit_keeping_order_and_summing_usage(fake_server, mt_client):
    fake_server.max_sentences = 5
    result = mt_client.translate(SENTENCES)
    assert result.texts == EXPECTED
    sizes = [len(t) for t in fake_server.sent()]
    assert sizes == [5, 5, 5, 5, 3]
    assert result.usage.sentences == 23
    assert result.usage.prompt_tokens == 230 and result.usage.completion_tokens == 69
    assert result.usage.cached_prompt_tokens == 25
    # Floats stay floats, strings stay strings, unknown fields are kept (numbers summed).
    assert isinstance(result.usage.engine_prompts, float) and result.usage.engine_prompts == pytest.approx(5.75)
    assert result.usage.cost == pytest.approx(0.000089 * 23) and result.usage.currency == "USD"
    assert result.usage.segments == 23
    assert result.usage.extra == {"future_field": 5, "future_label": "x"}
    assert result.ids == ["tr-1", "tr-2", "tr-3", "tr-4", "tr-5"]
    assert result.signature == fake_server.signature


def test_info_is_fetched_once_per_client(fake_server, mt_client):
    fake_server.max_sentences = 4
    mt_client.translate(SENTENCES[:9])
    mt_client.translate(SENTENCES[:9])
    assert fake_server.paths().count("/v1/info") == 1
    assert fake_server.paths().count("/v1/translate") == 6


def test_no_info_round_trip_for_a_single_sentence(fake_server, mt_client):
    mt_client.translate(["Only one."])
    assert fake_server.paths() == ["/v1/translate"]


def test_explicit_chunk_size_skips_info(fake_server, make_mt_client):
    result = make_mt_client(chunk_size=2).translate(SENTENCES[:5])
    assert result.texts == EXPECTED[:5]
    assert "/v1/info" not in fake_server.paths()
    assert [len(t) for t in fake_server.sent()] == [2, 2, 1]


def test_falls_back_to_64_when_info_is_missing_and_caches_it(fake_server, mt_client):
    fake_server.info_status = 404
    fake_server.max_sentences = None  # the fake server itself accepts anything
    sentences = [f"s{i}" for i in range(DEFAULT_MAX_SENTENCES_PER_REQUEST * 2 + 1)]
    assert mt_client.translate(sentences).texts == [f"DE<s{i}>" for i in range(len(sentences))]
    assert [len(t) for t in fake_server.sent()] == [64, 64, 1]
    mt_client.translate(sentences[:3])
    assert fake_server.paths().count("/v1/info") == 1  # a definite answer is cached


def test_falls_back_when_info_limits_are_absent(fake_server, mt_client):
    fake_server.max_sentences = None
    mt_client.translate([f"s{i}" for i in range(65)])
    assert [len(t) for t in fake_server.sent()] == [64, 1]
    assert mt_client.info().limits.max_sentences_per_request == 64


def test_transient_info_failure_is_not_cached(fake_server, mt_client, recorded_sleeps):
    fake_server.script("/v1/info", error_response(503, "not_ready"))
    mt_client.translate(["a", "b"])
    assert recorded_sleeps == []  # the /v1/info probe itself is not retried
    fake_server.max_sentences = 1
    mt_client.translate(["a", "b"])
    assert fake_server.paths().count("/v1/info") == 2
    assert [len(t) for t in fake_server.sent()] == [2, 1, 1]


def test_info_call_sets_the_chunk_size(fake_server, mt_client):
    fake_server.max_sentences = 3
    mt_client.info()
    mt_client.translate(SENTENCES[:7])
    assert fake_server.paths().count("/v1/info") == 1
    assert [len(t) for t in fake_server.sent()] == [3, 3, 1]


def test_error_param_is_shifted_to_the_callers_index(fake_server, mt_client):
    fake_server.max_sentences = 4
    sentences = [f"s{i}" for i in range(10)]
    sentences[6] = "   "
    with pytest.raises(batchmt.UnprocessableEntityError) as info:
        mt_client.translate(sentences)
    assert info.value.code == "empty_text"
    assert info.value.param == "texts[6]"  # the chunk said texts[2]
    assert "texts[6]" in info.value.message and "texts[2]" not in info.value.message


def test_failed_slots_keep_their_global_index_across_chunks(fake_server, mt_client):
    fake_server.max_sentences = 3
    sentences = [f"s{i}" for i in range(8)]
    sentences[4] = "FAIL 4"
    sentences[7] = "FAIL 7"
    result = mt_client.translate(sentences)
    assert [i for i, _ in result.failures] == [4, 7]
    assert result.texts[4] is None and result.texts[5] == "DE<s5>"


def test_signature_change_between_chunks_warns(fake_server, mt_client):
    fake_server.max_sentences = 2
    original = fake_server._translate

    def changing(request: httpx.Request) -> httpx.Response:
        fake_server.signature = "other"
        return original(request)

    fake_server.script("/v1/translate", original, changing)
    with pytest.warns(RuntimeWarning, match="signature changed"):
        mt_client.translate(["a", "b", "c", "d"])


async def test_async_chunks_concurrently_bounded_and_in_order(fake_server, make_async_mt_client):
    fake_server.max_sentences = 2
    fake_server.delay = 0.01
    sentences = [f"s{i}" for i in range(21)]
    async with make_async_mt_client(max_concurrency=3) as client:
        result = await client.translate(sentences)
    assert result.texts == [f"DE<s{i}>" for i in range(21)]
    assert fake_server.max_in_flight == 3  # concurrent, but never more than max_concurrency
    assert len(fake_server.translate_bodies()) == 11
    assert result.usage.sentences == 21 and result.usage.completion_tokens == 63
    assert fake_server.paths().count("/v1/info") == 1


async def test_async_order_is_kept_when_chunks_finish_out_of_order(fake_server, make_async_mt_client):
    sentences = [f"s{i}" for i in range(8)]

    answered = {first: asyncio.Event() for first in range(0, 8, 2)}

    async def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path != "/v1/translate":
            return fake_server.handle(request)
        # Later chunks answer first: each chunk waits until the next one has its answer
        # (all four are in flight at once: max_concurrency=4), so the order does not depend on timing.
        first = int(json.loads(request.content)["texts"][0][1:])
        if first + 2 in answered:
            await asyncio.wait_for(answered[first + 2].wait(), 5)
        response = fake_server.handle(request)
        answered[first].set()
        return response

    client = batchmt.AsyncClient(
        base_url="http://test", transport=httpx.MockTransport(handler), chunk_size=2, max_concurrency=4
    )
    async with client:
        result = await client.translate(sentences)
    assert result.texts == [f"DE<s{i}>" for i in range(8)]
    assert result.ids == ["tr-4", "tr-3", "tr-2", "tr-1"]  # answered in reverse, joined in order


async def test_async_chunk_error_cancels_the_rest_and_is_shifted(fake_server, make_async_mt_client):
    fake_server.delay = 0.01
    sentences = [f"s{i}" for i in range(12)]
    sentences[5] = ""
    async with make_async_mt_client(chunk_size=2, max_concurrency=2) as client:
        with pytest.raises(batchmt.UnprocessableEntityError) as info:
            await client.translate(sentences)
    assert info.value.param == "texts[5]"
    assert len(fake_server.translate_bodies()) < 6  # the remaining chunks were not all sent


async def test_async_max_concurrency_one_is_sequential(fake_server, make_async_mt_client):
    fake_server.delay = 0.005
    async with make_async_mt_client(chunk_size=1, max_concurrency=1) as client:
        result = await client.translate(["a", "b", "c"])
    assert result.texts == ["DE<a>", "DE<b>", "DE<c>"] and fake_server.max_in_flight == 1


def test_async_rejects_bad_concurrency():
    with pytest.raises(ValueError):
        batchmt.AsyncClient(max_concurrency=0)
