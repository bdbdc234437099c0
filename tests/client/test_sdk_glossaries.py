"""Glossaries and formality in the SDK (sync and async, the sync client generated from the async one) and the CLI
(``--glossary FILE|ID``, ``--formality``), against a real ``batchmt-server`` process on the fake engine (which
answers ``[de] <sentence>``, placeholder masks kept: with the default glossary method ``mask`` the German terms
are put in place of the masked English ones)."""

from __future__ import annotations

import pytest

import batchmt
from batchmt import cli

TMX = """<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4"><header srclang="en" datatype="plaintext" segtype="phrase" adminlang="en" creationtool="t"
 creationtoolversion="1" o-tmf="t"/><body>
<tu><tuv xml:lang="en"><seg>invoice</seg></tuv><tuv xml:lang="de"><seg>Rechnung</seg></tuv></tu>
</body></tmx>
"""


def test_sync_client_glossaries_round_trip_and_translate_with_one(fake_gateway):
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        g = client.glossaries.create("Billing", {"invoice": "Rechnung", "due date": "Fälligkeitsdatum"})
        assert isinstance(g, batchmt.Glossary) and g.entry_count == 2 and g.glossary_id.startswith("gl-")
        assert g.glossary_id in [x.glossary_id for x in client.glossaries.list()]
        assert client.glossaries.get(g.glossary_id) == g
        assert client.glossaries.entries(g) == [("due date", "Fälligkeitsdatum"), ("invoice", "Rechnung")]
        result = client.translate(["Pay the invoice.", "Good night."], glossary=g, formality="more")
        first, second = result.translations
        assert first.ok and first.text == "[de] Pay the Rechnung."
        assert second.ok and second.text == "[de] Good night."
        assert f"|glossary:{g.glossary_id}@{g.version}" in result.signature and "|formality:more" in result.signature
        client.glossaries.delete(g)
        with pytest.raises(batchmt.NotFoundError):
            client.glossaries.get(g)
        with pytest.raises(batchmt.NotFoundError):
            client.translate(["Pay the invoice."], glossary=g.glossary_id)
        with pytest.raises(batchmt.UnprocessableEntityError):
            client.translate(["Hi."], formality="polite")


async def test_async_client_creates_from_a_tmx_file(fake_gateway, tmp_path):
    path = tmp_path / "terms.tmx"
    path.write_text(TMX, encoding="utf-8")
    async with batchmt.AsyncClient(base_url=fake_gateway, timeout=60) as client:
        g = await client.glossaries.create_from_file(path)
        assert g.name == "terms.tmx" and g.entry_count == 1
        assert await client.glossaries.entries(g.glossary_id) == [("invoice", "Rechnung")]
        result = await client.translate("Pay the invoice.", glossary=g)
        assert result.texts == ["[de] Pay the Rechnung."]
        await client.glossaries.delete(g)


def test_cli_glossary_file_is_created_for_the_run_and_deleted_after(fake_gateway, tmp_path, capsys):
    terms = tmp_path / "terms.tsv"
    terms.write_text("invoice\tRechnung\n", encoding="utf-8")
    src, out = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("Pay the invoice.\nSee you soon.\n", encoding="utf-8")
    code = cli.main(
        [
            "--base-url",
            fake_gateway,
            "translate",
            "-i",
            str(src),
            "-o",
            str(out),
            "--glossary",
            str(terms),
            "--formality",
            "less",
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 0, err
    assert "glossary gl-" in err
    assert out.read_text(encoding="utf-8").splitlines() == ["[de] Pay the Rechnung.", "[de] See you soon."]
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        assert all(g.name != "terms.tsv" for g in client.glossaries.list())  # the run's glossary is gone
        g = client.glossaries.create("kept", {"invoice": "Rechnung"})
    code = cli.main(
        [
            "--base-url",
            fake_gateway,
            "translate",
            "-i",
            str(src),
            "-o",
            str(out),
            "--glossary",
            g.glossary_id,
            "--no-progress",
            "--no-resume",
        ]
    )
    assert code == 0
    code = cli.main(
        [
            "--base-url",
            fake_gateway,
            "translate",
            "-i",
            str(src),
            "-o",
            str(out),
            "--glossary",
            "missing.tsv",
            "--no-progress",
            "--no-resume",
        ]
    )
    assert code != 0 and "no such file" in capsys.readouterr().err
