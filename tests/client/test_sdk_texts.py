"""The texts contract from the SDK's side: options (quality, split_sentences, tag_handling,
preserve_placeholders), results that keep every field (partial, segments, failed_segments, float
usage), chunking by count and characters, texts over the server's limit, and servers older than
texts."""

from __future__ import annotations

import pytest
from sdk_fakes import usage_for

import batchmt
from batchmt import SegmentFailure, Translation, TranslationError, Usage


def test_usage_keeps_floats_strings_and_unknown_fields():
    data = usage_for(["Hello."], 1) | {"engine_prompts": 0.25, "cost": 0.000089}
    usage = Usage.from_json(data)
    assert usage.cost == 0.000089 and isinstance(usage.cost, float)
    assert usage.engine_prompts == 0.25 and usage.currency == "USD" and usage.segments == 1
    assert usage.prompt_tokens == 10 and isinstance(usage.prompt_tokens, int)
    assert usage.extra == {"future_field": 1, "future_label": "x"}
    total = usage + usage
    assert total.cost == pytest.approx(0.000178) and total.engine_prompts == 0.5 and total.currency == "USD"
    assert total.extra == {"future_field": 2, "future_label": "x"} and isinstance(total.prompt_tokens, int)
    assert total.to_dict()["cost"] == pytest.approx(0.000178) and total.to_dict()["future_label"] == "x"
    with pytest.raises(ValueError, match="EUR"):
        usage + Usage(currency="EUR")


def test_translation_keeps_every_field():
    t = Translation.from_json(
        {
            "text": "Eins. Two FAIL.",
            "status": "partial",
            "error": {"code": "unparseable_output", "message": "m"},
            "segments": 2,
            "failed_segments": [{"index": 1, "code": "unparseable_output", "message": "m"}],
            "detected_lang": "en",
        }
    )
    assert t.partial and not t.ok and t.segments == 2
    assert t.failed_segments == (SegmentFailure(1, "unparseable_output", "m"),)
    assert t.error == TranslationError("unparseable_output", "m") and t.extra == {"detected_lang": "en"}


def test_partial_and_failed_slots(mt_client):
    result = mt_client.translate(["One. Two.", "Good. Then FAIL here.", "FAIL. FAIL again."])
    ok, partial, failed = result.translations
    assert ok.ok and ok.text == "DE<One.> DE<Two.>" and ok.segments == 2
    assert partial.status == "partial" and partial.text == "DE<Good.> Then FAIL here."
    assert partial.failed_segments == (SegmentFailure(1, "unparseable_output", "bad output"),)
    assert failed.status == "failed" and failed.text is None and len(failed.failed_segments) == 2
    assert result.texts == ["DE<One.> DE<Two.>", None, None]  # None: not fully translated
    assert [i for i, _ in result.failures] == [1, 2]
    assert result.usage.segments == 6


def test_quality_and_text_options_are_sent(fake_server, mt_client):
    result = mt_client.translate(
        ["<p>Hi.</p>"], quality="best", split_sentences="newlines", tag_handling="html", preserve_placeholders=False
    )
    assert fake_server.translate_bodies() == [
        {
            "texts": ["<p>Hi.</p>"],
            "source_lang": "en",
            "target_lang": "de",
            "quality": "best",
            "split_sentences": "newlines",
            "tag_handling": "html",
            "preserve_placeholders": False,
        }
    ]
    assert result.texts == ["<p>DE(Hi.)</p>"] and result.signature.endswith("|quality:best")


def test_quality_is_sent_with_every_chunk(fake_server, mt_client):
    fake_server.max_sentences = 2
    mt_client.translate([f"s{i}" for i in range(5)], quality="balanced")
    assert [b["quality"] for b in fake_server.translate_bodies()] == ["balanced"] * 3


async def test_async_quality_and_chunks(fake_server, make_async_mt_client):
    fake_server.max_sentences = 2
    async with make_async_mt_client() as client:
        result = await client.translate([f"s{i}" for i in range(5)], quality="best", split_sentences="off")
    assert result.texts == [f"DE<s{i}>" for i in range(5)]
    assert {(b["quality"], b["split_sentences"]) for b in fake_server.translate_bodies()} == {("best", "off")}


def test_bad_option_types_are_refused_before_any_request(fake_server, mt_client):
    with pytest.raises(TypeError, match="preserve_placeholders"):
        mt_client.translate(["a"], preserve_placeholders="yes")
    with pytest.raises(TypeError, match="quality"):
        mt_client.translate(["a"], quality=3)
    assert fake_server.requests == []


def test_an_unknown_option_value_is_the_servers_422(fake_server, mt_client):
    with pytest.raises(batchmt.UnprocessableEntityError) as info:
        mt_client.translate(["a"], quality="perfect")
    assert info.value.code == "invalid_request" and info.value.param == "quality"


def test_chunks_by_characters_as_well_as_count(fake_server, mt_client):
    fake_server.max_request_chars = 100
    texts = ["x" * 40, "y" * 40, "z" * 40, "w" * 10, "v" * 95]
    result = mt_client.translate(texts)
    assert [[len(t) for t in chunk] for chunk in fake_server.sent()] == [[40, 40], [40, 10], [95]]
    assert result.ok and len(result.ids) == 3


def test_a_text_over_max_text_chars_fails_in_its_own_slot(fake_server, mt_client):
    fake_server.max_text_chars = 30
    texts = ["Short one.", "This text is much longer than thirty characters.", "Another."]
    result = mt_client.translate(texts)
    assert result.texts == ["DE<Short one.>", None, "DE<Another.>"]
    [(i, t)] = result.failures
    assert i == 1 and t.error.code == "text_too_long" and "max_text_chars" in t.error.message
    assert fake_server.sent() == [["Short one.", "Another."]]  # never sent


async def test_async_text_over_max_text_chars_fails_in_its_own_slot(fake_server, make_async_mt_client):
    fake_server.max_text_chars = 5
    fake_server.max_sentences = 1
    async with make_async_mt_client() as client:
        result = await client.translate(["a", "toolong", "b"])
    assert result.texts == ["DE<a>", None, "DE<b>"] and result.translations[1].error.code == "text_too_long"


def test_a_long_single_text_asks_for_the_limits_first(fake_server, mt_client):
    fake_server.max_text_chars = 1500
    result = mt_client.translate(["word " * 400])  # 2,000 characters: learn the limits before sending
    assert fake_server.paths() == ["/v1/info"] and result.translations[0].error.code == "text_too_long"


def test_a_server_older_than_texts_gets_sentences(fake_server, mt_client):
    fake_server.legacy = True
    result = mt_client.translate(["One.", "Two."], quality="best")
    assert result.texts == ["DE<One.>", "DE<Two.>"]
    bodies = fake_server.translate_bodies()
    assert "texts" in bodies[0] and bodies[-1]["sentences"] == ["One.", "Two."]
    mt_client.translate(["Three."])
    assert "sentences" in fake_server.translate_bodies()[-1]  # remembered: no second refusal
    assert result.translations[0].segments is None and result.usage.segments == 2


def test_an_older_server_uses_max_sentence_chars_per_text(fake_server, mt_client):
    fake_server.legacy = True
    result = mt_client.translate(["Fine.", "x" * 1200, "Also fine."])
    assert result.texts == ["DE<Fine.>", None, "DE<Also fine.>"]
    assert result.translations[1].error.code == "text_too_long"


def test_new_options_on_an_older_server_explain_themselves(fake_server, mt_client):
    fake_server.legacy = True
    with pytest.raises(batchmt.UnprocessableEntityError, match="predates texts"):
        mt_client.translate(["One."], split_sentences="off")


def test_suspect_texts_are_delivered_and_say_so(mt_client):
    result = mt_client.translate(["Fine sentence here.", "Please COPY this one."])
    fine, copied = result.translations
    assert fine.ok and fine.confidence == 0.8 and fine.suspect_segments == ()
    assert copied.suspect and not copied.ok and copied.delivered
    assert copied.text == "Please COPY this one." and copied.confidence == 0.2
    assert [(s.index, s.reason) for s in copied.suspect_segments] == [(0, "copy")]
    assert result.texts == ["DE<Fine sentence here.>", "Please COPY this one."]  # delivered, marked in translations


def test_a_suspect_line_is_written_and_noted_not_failed(mt_client, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("First line.\nPlease COPY this line.\nThird line.\n")
    report = mt_client.translate_file(src, dst, progress=False)
    assert dst.read_text() == "DE<First line.>\nPlease COPY this line.\nDE<Third line.>\n"
    assert report.ok and report.translated == 3
    assert [(f.line, f.code) for f in report.suspect] == [(2, "suspect_copy")]
