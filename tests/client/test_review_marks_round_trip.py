"""Files translated by machine are marked for review the way each format says, through a real ``batchmt-server``
process (the fake engine answers ``[de] <sentence>``): PO ``#, fuzzy``, XLIFF 1.2
``state="needs-review-translation"`` + ``state-qualifier="mt-suggestion"``, XLIFF 2.0 ``state="translated"`` +
``subState``; HTML ``lang`` and its translatable attributes; .docx/.pptx with their runs and styles; a binary
format batchmt does not read is "format not supported" before any request."""

from __future__ import annotations

import io

import httpx
import pytest

import batchmt
from batchmt.formats import parse_document
from helpers import GatewayProcess, gateway_env

polib = pytest.importorskip("polib")
etree = pytest.importorskip("lxml.etree")
docx = pytest.importorskip("docx")
pptx = pytest.importorskip("pptx")

X12 = "urn:oasis:names:tc:xliff:document:1.2"
X20 = "urn:oasis:names:tc:xliff:document:2.0"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("review-gateway") / "server.log"
    store = tmp_path_factory.mktemp("store")
    with GatewayProcess("--data-dir", str(store), log=log, env=gateway_env()) as gw:
        yield gw.url


def _translate(gateway: str, src, dst, **kwargs) -> batchmt.FileReport:
    with batchmt.Client(base_url=gateway, timeout=60) as client:
        report = client.translate_file(src, dst, progress=False, **kwargs)
    assert report.ok, report.failures
    return report


PO = """msgid ""
msgstr ""
"Project-Id-Version: shop 2.1\\n"
"Content-Type: text/plain; charset=UTF-8\\n"
"Plural-Forms: nplurals=2; plural=(n != 1);\\n"

#: cart.py:10
msgid "Your basket is empty."
msgstr ""

#: cart.py:12
msgid "One item"
msgid_plural "%d items"
msgstr[0] ""
msgstr[1] ""

#: cart.py:20
msgid "Checkout"
msgstr "Zur Kasse"
"""


def test_po_round_trip_marks_machine_translation_fuzzy(gateway, tmp_path):
    (tmp_path / "shop.po").write_text(PO, encoding="utf-8")
    _translate(gateway, tmp_path / "shop.po", tmp_path / "shop.de.po")
    po = polib.pofile(str(tmp_path / "shop.de.po"))
    basket = po.find("Your basket is empty.")
    assert basket.msgstr == "[de] Your basket is empty." and "fuzzy" in basket.flags
    items = po.find("One item")
    assert items.msgstr_plural[0] == "[de] One item" and "fuzzy" in items.flags
    assert items.flags.count("fuzzy") == 1
    done = po.find("Checkout")  # a translator's entry stays final
    assert done.msgstr == "Zur Kasse" and "fuzzy" not in done.flags
    # what msgfmt compiles: fuzzy entries are left out until a translator clears the flag
    assert [e.msgid for e in po.translated_entries()] == ["Checkout"]
    assert "#, fuzzy" in (tmp_path / "shop.de.po").read_text(encoding="utf-8")


def test_po_review_marks_can_be_turned_off():
    doc = parse_document(PO, "po", review=False)
    out = doc.render(["[de] " + u.text for u in doc.units], [True] * len(doc.units))
    assert isinstance(out, str)
    po = polib.pofile(out)
    assert not any("fuzzy" in e.flags for e in po)
    assert po.find("Your basket is empty.").msgstr == "[de] Your basket is empty."


XLIFF12 = f"""<?xml version="1.0" encoding="UTF-8"?>
<xliff version="1.2" xmlns="{X12}">
 <file original="app" source-language="en" datatype="plaintext">
  <body>
   <trans-unit id="greet"><source>Welcome back.</source></trans-unit>
   <trans-unit id="done"><source>Save</source><target state="final">Speichern</target></trans-unit>
  </body>
 </file>
</xliff>
"""

XLIFF20 = f"""<?xml version="1.0" encoding="UTF-8"?>
<xliff version="2.0" xmlns="{X20}" srcLang="en">
 <file id="f1">
  <unit id="u1"><segment id="s1"><source>Welcome back.</source></segment></unit>
 </file>
</xliff>
"""


def test_xliff_12_round_trip_marks_targets_as_mt_needing_review(gateway, tmp_path):
    (tmp_path / "app.xlf").write_text(XLIFF12, encoding="utf-8")
    _translate(gateway, tmp_path / "app.xlf", tmp_path / "app.de.xlf")
    root = etree.fromstring((tmp_path / "app.de.xlf").read_bytes())
    ns = {"x": X12}
    target = root.find(".//x:trans-unit[@id='greet']/x:target", ns)
    assert target.text == "[de] Welcome back."
    assert target.get("state") == "needs-review-translation"
    assert target.get("state-qualifier") == "mt-suggestion"
    kept = root.find(".//x:trans-unit[@id='done']/x:target", ns)
    assert kept.get("state") == "final" and kept.get("state-qualifier") is None


def test_xliff_20_round_trip_marks_segments_translated_not_reviewed(gateway, tmp_path):
    (tmp_path / "app.xliff").write_text(XLIFF20, encoding="utf-8")
    _translate(gateway, tmp_path / "app.xliff", tmp_path / "app.de.xliff")
    root = etree.fromstring((tmp_path / "app.de.xliff").read_bytes())
    seg = root.find(f".//{{{X20}}}segment")
    assert seg.find(f"{{{X20}}}target").text == "[de] Welcome back."
    assert seg.get("state") == "translated" and seg.get("subState") == "batchmt:mt"


def _docx_bytes() -> bytes:
    d = docx.Document()
    d.add_heading("Annual report", level=1)
    p = d.add_paragraph("The museum is ")
    p.add_run("closed").bold = True
    p.add_run(" on ")
    p.add_run("Mondays").italic = True
    p.add_run(".")
    d.add_paragraph("Tickets cost 12 euros.", style="List Bullet")
    table = d.add_table(rows=1, cols=1)
    table.cell(0, 0).text = "Children enter for free."
    d.sections[0].footer.paragraphs[0].text = "Page footer."
    buf = io.BytesIO()
    d.save(buf)
    return buf.getvalue()


def test_docx_round_trip_keeps_runs_styles_tables_and_footers(gateway, tmp_path):
    (tmp_path / "report.docx").write_bytes(_docx_bytes())
    report = _translate(gateway, tmp_path / "report.docx", tmp_path / "report.de.docx")
    assert report.format == "docx" and report.units == 5
    out = docx.Document(str(tmp_path / "report.de.docx"))
    heading, body, bullet = out.paragraphs[:3]
    assert heading.style.name == "Heading 1" and heading.text == "[de] Annual report"
    assert bullet.style.name == "List Bullet" and bullet.text == "[de] Tickets cost 12 euros."
    runs = [(r.text, bool(r.bold), bool(r.italic)) for r in body.runs]
    assert "".join(t for t, _, _ in runs) == "[de] The museum is closed on Mondays."
    assert ("closed", True, False) in runs and ("Mondays", False, True) in runs  # formatting on its words
    assert out.tables[0].cell(0, 0).text == "[de] Children enter for free."
    assert out.sections[0].footer.paragraphs[0].text == "[de] Page footer."


def test_pptx_round_trip_keeps_runs_and_notes(gateway, tmp_path):
    prs = pptx.Presentation()
    slide = prs.slides.add_slide(prs.slide_layouts[1])
    slide.shapes.title.text = "Quarterly results"
    frame = slide.placeholders[1].text_frame
    frame.text = "Sales grew "
    run = frame.paragraphs[0].add_run()
    run.text = "strongly"
    run.font.bold = True
    slide.notes_slide.notes_text_frame.text = "Speak slowly."
    prs.save(str(tmp_path / "deck.pptx"))
    _translate(gateway, tmp_path / "deck.pptx", tmp_path / "deck.de.pptx")
    out = pptx.Presentation(str(tmp_path / "deck.de.pptx")).slides[0]
    assert out.shapes.title.text_frame.text == "[de] Quarterly results"
    runs = [(r.text, r.font.bold) for r in out.placeholders[1].text_frame.paragraphs[0].runs]
    assert "".join(t for t, _ in runs) == "[de] Sales grew strongly" and ("strongly", True) in runs
    assert out.notes_slide.notes_text_frame.text == "[de] Speak slowly."


HTML = """<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><meta name="description" content="Opening hours of the museum.">
<title>Opening hours</title></head>
<body>
<p>The museum is closed on Mondays.</p>
<img src="door.png" alt="The front door of the museum.">
<input name="q" placeholder='Search the collection'>
<a href="/tickets" title="Buy tickets online.">Tickets</a>
</body>
</html>
"""


def test_html_gets_the_target_lang_and_its_attributes_translated(gateway, tmp_path):
    (tmp_path / "hours.html").write_text(HTML, encoding="utf-8")
    _translate(gateway, tmp_path / "hours.html", tmp_path / "hours.de.html")
    out = (tmp_path / "hours.de.html").read_text(encoding="utf-8")
    assert '<html lang="de">' in out
    assert 'content="[de] Opening hours of the museum."' in out
    assert 'alt="[de] The front door of the museum."' in out
    assert 'placeholder="[de] Search the collection"' in out
    assert 'title="[de] Buy tickets online."' in out
    assert 'src="door.png"' in out and 'href="/tickets"' in out and 'name="q"' in out  # the rest as it was
    assert "<p>[de] The museum is closed on Mondays.</p>" in out


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("scan.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
        ("old.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 64),
        ("sheet.xlsx", b"PK\x03\x04" + b"\x00" * 64),
        ("noext", b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xdf\xa4\xd2lZ\x01"),  # a .docx renamed
        ("data.txt", b"\x00\x01\x02 binary \x00"),
    ],
)
def test_a_binary_format_we_do_not_read_is_format_not_supported_before_any_request(name, data, tmp_path):
    (tmp_path / name).write_bytes(data)
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request.url.path)
        return httpx.Response(500)

    with batchmt.Client(base_url="http://x", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(batchmt.FileFormatError, match="format not supported") as exc:
            client.translate_file(tmp_path / name, tmp_path / "out", progress=False)
    assert "utf-8" not in str(exc.value)
    assert requests == []


def test_docx_runs_follow_the_words_when_the_translation_reorders_them():
    d = docx.Document()
    p = d.add_paragraph("I ")
    p.add_run("really").italic = True
    p.add_run(" like ")
    p.add_run("this").bold = True
    p.add_run(" museum.")
    buf = io.BytesIO()
    d.save(buf)
    doc = parse_document(buf.getvalue(), "docx")
    (unit,) = doc.units
    assert unit.tag_handling == "xml" and unit.text == "I <r1>really</r1> like <r3>this</r3> museum."
    # German puts the bold word first and drops a plain piece: runs move with their words
    out = doc.render(["<r3>Dieses</r3> Museum mag ich <r1>wirklich</r1>."], [True])
    assert isinstance(out, bytes)
    runs = [(r.text, bool(r.bold), bool(r.italic)) for r in docx.Document(io.BytesIO(out)).paragraphs[0].runs]
    assert [r for r in runs if r[0]] == [
        ("Dieses", True, False),
        (" Museum mag ich ", False, False),
        ("wirklich", False, True),
        (".", False, False),
    ]


def test_the_cli_marks_for_review_and_no_review_marks_turns_it_off(gateway, tmp_path):
    from batchmt.cli import main

    (tmp_path / "shop.po").write_text(PO, encoding="utf-8")
    base = ["--base-url", gateway, "translate", "-i", str(tmp_path / "shop.po"), "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "marked.po")]) == 0
    assert main([*base, "-o", str(tmp_path / "plain.po"), "--no-review-marks"]) == 0
    assert "fuzzy" in polib.pofile(str(tmp_path / "marked.po")).find("Your basket is empty.").flags
    plain = polib.pofile(str(tmp_path / "plain.po")).find("Your basket is empty.")
    assert plain.msgstr == "[de] Your basket is empty." and "fuzzy" not in plain.flags
