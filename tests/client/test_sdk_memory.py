"""``client.memory`` and ``batchmt memory`` against a real ``batchmt-server`` process on the fake engine (its
translations are ``[de] <English>``): import a TMX of our own, translate from it, export, purge; the sync client
(generated) and the async one behave the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

import batchmt
from batchmt import cli

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "memory_sample.tmx"
LIGHTHOUSE = "Our lighthouse tours start at the blue gate every morning."
LIGHTHOUSE_DE = "Unsere Leuchtturmführungen beginnen jeden Morgen am blauen Tor."


def units(path: Path) -> dict[str, tuple[str, str]]:
    """English -> (origin, German) of an exported TMX."""
    root = etree.parse(str(path)).getroot()
    assert root.tag == "tmx" and root.get("version") == "1.4" and root.find("header").get("srclang") == "en"
    out = {}
    for tu in root.find("body").iterfind("tu"):
        origin = next(p.text for p in tu.iterfind("prop") if p.get("type") == "x-batchmt-origin")
        en, de = (tuv.find("seg").text for tuv in tu.iterfind("tuv"))
        out[en] = (origin, de)
    return out


def test_sync_client_imports_translates_from_memory_exports_and_purges(fake_gateway, tmp_path):
    with batchmt.Client(base_url=fake_gateway) as client:
        client.memory.purge()
        result = client.memory.import_file(SAMPLE)
        assert (result.format, result.imported, result.new) == ("tmx", 4, 4)
        assert result.skipped == {"no_language_pair": 1}
        out = client.translate([LIGHTHOUSE, "The foghorn sounds twice at noon."])
        assert out.texts == [LIGHTHOUSE_DE, "[de] The foghorn sounds twice at noon."]
        assert [t.memory for t in out.translations] == ["human", None]
        path = client.memory.export(tmp_path / "memory.tmx", origin="human")
        assert units(path)[LIGHTHOUSE] == ("human", LIGHTHOUSE_DE) and len(units(path)) == 4
        assert client.memory.info().human_entries == 4
        assert client.memory.purge(source=LIGHTHOUSE) == 1
        assert client.translate([LIGHTHOUSE]).translations[0].memory is None
        with pytest.raises(batchmt.BadRequestError) as err:
            client.memory.import_file(_write(tmp_path / "broken.tmx", "<tmx><body><tu>"))
        assert err.value.code == "invalid_tmx"


async def test_async_client_does_the_same(fake_gateway, tmp_path):
    async with batchmt.AsyncClient(base_url=fake_gateway) as client:
        await client.memory.purge()
        tsv = _write(tmp_path / "terms.tsv", "The pier opens at dawn.\tDer Steg öffnet im Morgengrauen.\n")
        assert (await client.memory.import_file(tsv)).imported == 1
        out = await client.translate(["The pier opens at dawn."])
        assert out.texts == ["Der Steg öffnet im Morgengrauen."] and out.translations[0].memory == "human"
        path = await client.memory.export(tmp_path / "all.tmx")
        assert units(path)["The pier opens at dawn."] == ("human", "Der Steg öffnet im Morgengrauen.")
        assert await client.memory.purge(origin="human") == 1
        assert (await client.memory.info()).human_entries == 0


def test_cli_memory_import_export_purge(fake_gateway, tmp_path, capsys):
    base = ["--base-url", fake_gateway]
    assert cli.main([*base, "memory", "purge"]) == 0
    assert cli.main([*base, "memory", "import", str(SAMPLE)]) == 0
    assert "imported 4 entries" in capsys.readouterr().out
    out = tmp_path / "out.tmx"
    assert cli.main([*base, "memory", "export", str(out), "--origin", "human"]) == 0
    assert units(out)[LIGHTHOUSE] == ("human", LIGHTHOUSE_DE)
    assert cli.main([*base, "memory", "purge", "--source", LIGHTHOUSE]) == 0
    assert "deleted 1 entries" in capsys.readouterr().out
    assert cli.main([*base, "memory", "info"]) == 0
    assert '"human_entries": 3' in capsys.readouterr().out
    assert cli.main([*base, "memory", "import", str(_write(tmp_path / "bad.tsv", "a\tb\tc\n"))]) == 1
    assert "invalid_tsv" in capsys.readouterr().err


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
