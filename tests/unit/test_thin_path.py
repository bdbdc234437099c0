"""The translate path does each thing once (issue 23, "a thin translate path"): markup is parsed once per text,
a key is charged in one place with one mapping of its limits to the API's errors, stats are recorded once per
request from its outcome."""

from __future__ import annotations

import pytest

from helpers import running_gateway

HTML = ["<p>The museum is <b>closed</b> on Mondays.</p>", "<p>It opens again on <i>Tuesday</i>.</p>"]


async def test_markup_is_parsed_once_per_text(monkeypatch):
    from batchmt_server.protocol import validation
    from batchmt_server.text import documents, markup

    calls: list[str] = []
    real = markup.parse_markup

    def counting(text, kind):
        calls.append(text)
        return real(text, kind)

    monkeypatch.setattr(documents, "parse_markup", counting)
    monkeypatch.setattr(validation, "parse_markup", counting)
    async with running_gateway() as (c, _app):
        r = await c.post("/v1/translate", json={"texts": HTML, "tag_handling": "html"})
    assert r.status_code == 200, r.text
    assert [t["status"] for t in r.json()["translations"]] == ["ok", "ok"]
    assert sorted(calls) == sorted(HTML)  # once each, not validated and then prepared


async def test_markup_that_does_not_parse_is_still_refused_before_any_work():
    async with running_gateway() as (c, app):
        r = await c.post(
            "/v1/translate", json={"texts": ["<p>ok</p>", "<p>open</q>"], "tag_handling": "xml", "quality": "best"}
        )
        prompts = list(app.state.gateway.engine.prompts)
        stats = app.state.gateway.stats.snapshot()
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "invalid_markup" and err["param"] == "texts[1]"
    assert prompts == [] and stats.requests.get("rejected") == 1


def test_validate_request_still_checks_markup_for_batch_lines():
    from batchmt_server.protocol.errors import APIError
    from batchmt_server.protocol.schemas import TranslateRequest
    from batchmt_server.protocol.validation import validate_request
    from batchmt_server.settings import Settings

    req = TranslateRequest(texts=["<p>open</q>"], tag_handling="xml")
    with pytest.raises(APIError) as exc:
        validate_request(req, Settings(engine="fake", _env_file=None))
    assert exc.value.code == "invalid_markup"
    validate_request(req, Settings(engine="fake", _env_file=None), markup=False)  # the translator parses it next
