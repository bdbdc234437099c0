"""What a DeepL user types first (issue 26): ``{"text": [...]}`` gets a 422 that names ``texts``; a misspelt field
names the closest; ``usage.texts`` counts the texts next to ``segments``."""

from __future__ import annotations

import pytest

from helpers import running_gateway


@pytest.mark.parametrize(
    ("body", "param", "hint"),
    [
        ({"text": ["Hello."]}, "text", "did you mean 'texts' (a list of strings)?"),
        ({"texts": ["Hello."], "target_language": "de"}, "target_language", "did you mean 'target_lang'?"),
        ({"texts": ["Hello."], "qualty": "best"}, "qualty", "did you mean 'quality'?"),
    ],
)
async def test_an_unknown_field_gets_a_did_you_mean_before_any_work(body, param, hint):
    async with running_gateway() as (c, app):
        r = await c.post("/v1/translate", json=body)
        engine_prompts = list(app.state.gateway.engine.prompts)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_request" and err["param"] == param
    assert err["message"] == f"{param}: unknown field; {hint}"
    assert engine_prompts == []  # refused before any work


async def test_an_unknown_field_with_nothing_close_says_only_that():
    async with running_gateway() as (c, _app):
        r = await c.post("/v1/translate", json={"texts": ["Hello."], "zzzz": 1})
    assert r.status_code == 422 and r.json()["error"]["message"] == "zzzz: unknown field"


async def test_usage_counts_texts_next_to_segments():
    async with running_gateway() as (c, _app):
        r = await c.post("/v1/translate", json={"texts": ["One. Two. Three.", "Four."]})
    usage = r.json()["usage"]
    assert usage["texts"] == 2 and usage["segments"] == 4 and usage["sentences"] == 2
