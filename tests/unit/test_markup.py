"""tag_handling html/xml: runs with inline-tag markers, rendered back with the same tag sequence."""

from __future__ import annotations

import pytest
from lxml import etree

from batchmt_server.text.markup import MarkupError, parse_markup, tag_sequence

HTML = (
    '<h1>Opening hours</h1>\n<p>Click <b>here</b> to <a href="/x?a=1&amp;b=2" title="Go">continue</a>. '
    "Then wait.</p>\n<ul><li>One <i>item</i></li><li>Two<br>lines</li></ul>\n"
    "<p>Run <code>make test</code> first.</p><script>var s = 'Do not translate.';</script>"
)


def upper(doc) -> str:
    """Every run 'translated' to upper case, markers kept."""
    return doc.render([run.source().replace("[TAG_", "\0").upper().replace("\0", "[TAG_") for run in doc.runs])


def test_html_runs_keep_inline_tags_inside_their_sentence() -> None:
    doc = parse_markup(HTML, "html")
    assert [r.source() for r in doc.runs] == [
        "Opening hours",
        "Click [TAG_1]here[TAG_2] to [TAG_3]continue[TAG_4]. Then wait.",
        "One [TAG_5]item[TAG_6]",
        "Two[TAG_7]lines",
        "Run [TAG_8] first.",
    ]


def test_html_round_trip_identity_and_translated() -> None:
    doc = parse_markup(HTML, "html")
    same = doc.render([r.source() for r in doc.runs])
    assert same == HTML
    out = upper(parse_markup(HTML, "html"))
    assert '<p>CLICK <b>HERE</b> TO <a href="/x?a=1&amp;b=2" title="Go">CONTINUE</a>. THEN WAIT.</p>' in out
    assert "<code>make test</code>" in out and "'Do not translate.'" in out
    assert tag_sequence(out, "html") == tag_sequence(HTML, "html")


def test_html_document_keeps_doctype_and_head() -> None:
    src = "<!DOCTYPE html><html><head><title>Hello</title></head><body><div>Intro<p>Para.</p>after</div></body></html>"
    doc = parse_markup(src, "html")
    assert [r.source() for r in doc.runs] == ["Hello", "Intro", "Para.", "after"]
    out = doc.render(["Hallo", "Einleitung", "Absatz.", "danach"])
    assert out.startswith("<!DOCTYPE html>")
    assert "<title>Hallo</title>" in out and "<div>Einleitung<p>Absatz.</p>danach</div>" in out


def test_translate_no_and_notranslate_are_kept() -> None:
    src = '<p>Say <span translate="no">Acme Cloud</span> twice.</p><p class="notranslate">Keep.</p>'
    doc = parse_markup(src, "html")
    assert [r.source() for r in doc.runs] == ["Say [TAG_1] twice."]


def test_xml_document_and_fragment() -> None:
    src = '<?xml version="1.0" encoding="UTF-8"?>\n<doc><p>Hello <g id="1">world</g>!</p><!-- note --><p>Bye.</p></doc>'
    doc = parse_markup(src, "xml")
    assert [r.source() for r in doc.runs] == ["Hello [TAG_1]world[TAG_2]!", "Bye."]
    out = doc.render(["Hallo [TAG_1]Welt[TAG_2]!", "Tschüss."])
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert '<doc><p>Hallo <g id="1">Welt</g>!</p><!-- note --><p>Tschüss.</p></doc>' in out
    etree.fromstring(out.split("\n", 1)[1].encode())  # well-formed
    frag = parse_markup("<s>Fish &amp; chips</s><s>Tea</s>", "xml")
    assert frag.render([r.source() for r in frag.runs]) == "<s>Fish &amp; chips</s><s>Tea</s>"


def test_xml_inline_by_mixed_content() -> None:
    doc = parse_markup("<seg>Press <kbd>Enter</kbd> and <ph x='1'/> go.</seg>", "xml")
    assert [r.source() for r in doc.runs] == ["Press [TAG_1] and [TAG_2] go."]


def test_marker_prefix_avoids_text_that_looks_like_a_marker() -> None:
    doc = parse_markup("<p>Literal [TAG_1] here <b>bold</b>.</p>", "html")
    assert doc.runs[0].source() == "Literal [TAG_1] here [TAG1_1]bold[TAG1_2]."


@pytest.mark.parametrize("bad", ["<p>open</q>", "<a><b></a></b>", "x & y <", "<p>&nbsp;</p>"])
def test_unparsable_xml_is_a_clear_error(bad: str) -> None:
    with pytest.raises(MarkupError, match="not well-formed XML"):
        parse_markup(bad, "xml")


def test_render_needs_the_markers_in_order() -> None:
    doc = parse_markup("<p>Click <b>here</b>.</p>", "html")
    with pytest.raises(ValueError):
        doc.render(["Hier [TAG_2]klicken[TAG_1]."])
