"""The SDK and CLI against a real ``batchmt-server`` process (uvicorn, the server's fake engine, which
answers ``[de] <sentence>``) on loopback: the texts contract end to end (server-side segmentation and
reassembly, options, usage), and file formats through the real server. No vLLM: fast tests."""

from __future__ import annotations

import json

import pytest

import batchmt
from batchmt import cli

PARAGRAPH = (
    "The museum is closed on Mondays. Tickets cost 12 euros.\n"
    "  - Guided tours start at 10 a.m.\n"
    "  - Visit https://example.org/tours for details.\n\n"
    "I have lost my keys again."
)


def test_texts_are_segmented_and_reassembled_by_the_server(fake_gateway):
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        info = client.info()
        result = client.translate([PARAGRAPH, "One sentence."], quality="fast")
    assert info.limits.max_text_chars and info.limits.max_request_chars
    para, one = result.translations
    assert para.ok and para.segments >= 4 and one.segments == 1
    assert para.text is not None and para.text.count("[de] ") == para.segments
    # the layout between sentences is the input's: line breaks, bullets, indentation, the blank line
    assert para.text.replace("[de] ", "") == PARAGRAPH
    assert isinstance(result.usage.cost, float) and result.usage.currency
    assert result.usage.segments == para.segments + 1


async def test_async_client_with_options(fake_gateway):
    async with batchmt.AsyncClient(base_url=fake_gateway, timeout=60, chunk_size=2) as client:
        result = await client.translate([f"Sentence {i}. And more." for i in range(5)], split_sentences="off")
    assert result.ok and len(result.ids) == 3
    assert [t.segments for t in result.translations] == [1] * 5


def test_a_confidence_comes_when_asked(fake_gateway):
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        plain = client.translate(["The bakery opens early today."])
        asked = client.translate(["The bakery closes late today."], confidence=True)
        with pytest.raises(TypeError):
            client.translate(["x"], confidence="yes")  # type: ignore[arg-type]
    assert plain.ok and plain.translations[0].confidence is None
    (t,) = asked.translations
    assert t.ok and t.confidence is not None and 0 < t.confidence <= 1


def test_html_keeps_the_markup(fake_gateway):
    html = '<p>Hello <b>world</b>.</p><p>See <a href="https://example.org">the site</a>.</p>'
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        [out] = client.translate([html], tag_handling="html").raise_for_failures().texts
    assert out is not None and "[de] " in out
    assert '<a href="https://example.org">' in out and "<b>" in out and out.count("<p>") == 2


def test_a_file_with_a_2000_character_line_translates_to_the_end(fake_gateway, tmp_path):
    long_line = " ".join(f"This is sentence {i} of one very long line." for i in range(60))[:2000]
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text(f"First line.\n{long_line}\n\nLast line.\n", encoding="utf-8")
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        report = client.translate_file(src, dst, progress=False)
    out = dst.read_text(encoding="utf-8").split("\n")
    assert report.ok and report.translated == 3
    assert out[0] == "[de] First line." and out[2] == "" and out[3] == "[de] Last line."
    assert out[1].replace("[de] ", "") == long_line and out[1].count("[de] ") > 20


def test_po_and_srt_through_the_real_server(fake_gateway, tmp_path):
    polib = pytest.importorskip("polib")
    srt = pytest.importorskip("srt")
    po_src, po_dst = tmp_path / "app.po", tmp_path / "app.de.po"
    po_src.write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
        '#: a.c:3\nmsgid "Hello {name}, you have %d new messages."\nmsgstr ""\n',
        encoding="utf-8",
    )
    srt_src, srt_dst = tmp_path / "film.srt", tmp_path / "film.de.srt"
    srt_src.write_text(
        "1\n00:00:01,000 --> 00:00:02,500\nWhere are you going?\n\n2\n00:00:03,000 --> 00:00:04,000\nHome.\n\n",
        encoding="utf-8",
    )
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        client.translate_file(po_src, po_dst, progress=False)
        client.translate_file(srt_src, srt_dst, progress=False)
    [entry] = list(polib.pofile(str(po_dst)))
    assert entry.msgstr.startswith("[de] ") and "{name}" in entry.msgstr and "%d" in entry.msgstr
    subs = list(srt.parse(srt_dst.read_text(encoding="utf-8")))
    assert [s.content for s in subs] == ["[de] Where are you going?", "[de] Home."]


def test_cli_jsonl_with_quality(fake_gateway, tmp_path, capsys):
    src, dst = tmp_path / "reviews.jsonl", tmp_path / "reviews.de.jsonl"
    src.write_text('{"id": 7, "body": "Great phone. The battery lasts two days."}\n', encoding="utf-8")
    code = cli.main(
        [
            "--base-url",
            fake_gateway,
            "translate",
            "-i",
            str(src),
            "-o",
            str(dst),
            "--field",
            "body",
            "--quality",
            "balanced",
            "--no-progress",
        ]
    )
    assert code == 0, capsys.readouterr().err
    record = json.loads(dst.read_text(encoding="utf-8"))
    assert record["id"] == 7 and record["body"].count("[de] ") == 2


def test_cli_notes_german_input_and_strict_stops(fake_gateway, tmp_path, capsys):
    src, dst = tmp_path / "mixed.txt", tmp_path / "mixed.de.txt"
    german = "Das Museum ist montags geschlossen und öffnet am Dienstag um zehn Uhr wieder."
    src.write_text(f"The museum is closed on Mondays.\n{german}\n", encoding="utf-8")
    common = ["--base-url", fake_gateway, "translate", "-i", str(src), "--no-progress", "--no-resume"]
    code = cli.main([*common, "-o", str(dst)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "1 line written but suspect" in err and "line 2" in err  # written all the same, and noted
    assert dst.read_text(encoding="utf-8").count("[de] ") == 2
    code = cli.main([*common, "-o", str(tmp_path / "strict.de.txt"), "--source-lang-check", "strict"])
    err = capsys.readouterr().err
    assert code != 0 and "source_lang_mismatch" in err, err


XLIFF = """<?xml version="1.0" encoding="UTF-8"?>
<xliff version="1.2" xmlns="urn:oasis:names:tc:xliff:document:1.2">
 <file original="shop" source-language="en" datatype="plaintext">
  <body>
   <trans-unit id="welcome">
    <source>Welcome to <g id="1">our shop</g>. Prices start at <x id="2"/> euros.</source>
   </trans-unit>
   <trans-unit id="save">
    <source>Save your changes before closing {app_name}.</source>
   </trans-unit>
  </body>
 </file>
</xliff>
"""

HTML = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Opening hours</title></head>
<body>
<p>The museum is closed on <b>Mondays</b>. See <a href="https://example.org/hours">the full list</a>.</p>
<ul><li>Adults pay 12 euros.</li><li>Children enter for free.</li></ul>
</body>
</html>
"""


def test_xliff_html_and_csv_through_the_real_server(fake_gateway, tmp_path):
    etree = pytest.importorskip("lxml.etree")
    files = {"shop.xlf": XLIFF, "hours.html": HTML, "rows.csv": 'id,text\n1,"Hello, world. Second one."\n2,Plain\n'}
    with batchmt.Client(base_url=fake_gateway, timeout=60) as client:
        for name, text in files.items():
            (tmp_path / name).write_text(text, encoding="utf-8")
            report = client.translate_file(tmp_path / name, tmp_path / f"de-{name}", progress=False)
            assert report.ok, (name, report.failures)
    ns = {"x": "urn:oasis:names:tc:xliff:document:1.2"}
    root = etree.fromstring((tmp_path / "de-shop.xlf").read_bytes())
    welcome = root.find(".//x:trans-unit[@id='welcome']/x:target", ns)
    assert [etree.QName(el).localname for el in welcome.iter()] == ["target", "g", "x"]  # inline tags kept
    assert welcome.text.startswith("[de] ") and welcome.find("x:g", ns).text == "our shop"
    save = root.find(".//x:trans-unit[@id='save']/x:target", ns)
    assert save.text == "[de] Save your changes before closing {app_name}."
    html = (tmp_path / "de-hours.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.endswith("</html>\n")
    assert '<a href="https://example.org/hours">' in html and html.count("[de] ") == 5
    assert (tmp_path / "de-rows.csv").read_text(encoding="utf-8") == (
        'id,text\n1,"[de] Hello, world. [de] Second one."\n2,[de] Plain\n'
    )
