"""Entries as protected segments and back: identity is byte-exact, damage is refused, markup survives."""

from __future__ import annotations

import pytest

from batchmt_server.text.documents import prepare
from batchmt_server.text.markup import MarkupError, tag_sequence

TEXT = (
    "Dear {name},\r\n\r\nThank you for contacting [COMPANY_1]. Your ticket is %s.\r\n"
    "  - Visit https://help.example.com/t?id=7 for updates.\r\n"
    "  - Or write to help@example.com.\t\r\n"
)


def test_identity_gives_the_input_back() -> None:
    entry = prepare(TEXT)
    assert entry.engine_texts == [
        "Dear [PH_1],",
        "Thank you for contacting [PH_1].",
        "Your ticket is [PH_1].",
        "Visit [PH_1] for updates.",
        "Or write to [PH_1].",
    ]
    text, kept = entry.assemble(entry.engine_texts)
    assert text == TEXT and kept == []


def test_translation_restores_spans_and_layout() -> None:
    entry = prepare(TEXT)
    out = [
        "Liebe(r) [PH_1],",
        "Danke, dass Sie [PH_1] kontaktiert haben.",
        "Ihr Ticket ist [PH_1].",
        "Besuchen Sie [PH_1] für Neuigkeiten.",
        "Oder schreiben Sie an [PH_1].",
    ]
    text, kept = entry.assemble(out)
    assert kept == []
    assert text == (
        "Liebe(r) {name},\r\n\r\nDanke, dass Sie [COMPANY_1] kontaktiert haben. Ihr Ticket ist %s.\r\n"
        "  - Besuchen Sie https://help.example.com/t?id=7 für Neuigkeiten.\r\n"
        "  - Oder schreiben Sie an help@example.com.\t\r\n"
    )


def test_failed_or_damaged_segments_keep_their_source_in_place() -> None:
    entry = prepare(TEXT)
    out = ["Liebe(r) [PH_1],", None, "Ihr Ticket ist.", "Besuchen Sie [PH_1] [PH_1].", "Oder an [PH_1]."]
    text, kept = entry.assemble(out)
    assert kept == [1, 2, 3]
    assert "Thank you for contacting [COMPANY_1]. Your ticket is %s.\r\n" in text
    assert "  - Visit https://help.example.com/t?id=7 for updates.\r\n" in text
    assert text.startswith("Liebe(r) {name},\r\n\r\n")


def test_preserve_placeholders_off_sends_spans_raw() -> None:
    entry = prepare("Hello {name}. Bye.", preserve=False)
    assert entry.engine_texts == ["Hello {name}.", "Bye."]
    assert entry.assemble(["Hallo {Name}.", "Tschüss."]) == ("Hallo {Name}. Tschüss.", [])


@pytest.mark.parametrize("mode", ["on", "newlines", "off"])
def test_modes_reach_the_segmenter(mode: str) -> None:
    entry = prepare("One. Two.\nThree.", mode)  # type: ignore[arg-type]
    assert entry.segments == {"on": 3, "newlines": 2, "off": 1}[mode]


def test_html_entry_round_trip() -> None:
    html = (
        '<p>Hello <b>{name}</b>, read <a href="https://x.example/a">the guide</a>. It helps.</p>'
        "<ul><li>First <i>point</i></li></ul>"
    )
    entry = prepare(html, tag_handling="html")
    assert entry.engine_texts == [
        "Hello [TAG_1][PH_2][TAG_3], read [TAG_4]the guide[TAG_5].",
        "It helps.",
        "First [TAG_1]point[TAG_2]",
    ]
    out = ["Hallo [TAG_1][PH_2][TAG_3], lies [TAG_4]die Anleitung[TAG_5].", "Es hilft.", "Erster [TAG_1]Punkt[TAG_2]"]
    text, kept = entry.assemble(out)
    assert kept == []
    assert text == (
        '<p>Hallo <b>{name}</b>, lies <a href="https://x.example/a">die Anleitung</a>. Es hilft.</p>'
        "<ul><li>Erster <i>Punkt</i></li></ul>"
    )
    # a segment that loses or swaps a tag is left in English, the markup stays whole
    text, kept = entry.assemble(["Hallo [PH_2], lies die Anleitung.", "Es hilft.", "Erster [TAG_2]Punkt[TAG_1]"])
    assert kept == [0, 2]
    assert tag_sequence(text, "html") == tag_sequence(html, "html")
    assert "<p>Hello <b>{name}</b>, read" in text and "Es hilft." in text


def test_bad_xml_raises() -> None:
    with pytest.raises(MarkupError):
        prepare("<p>unclosed", tag_handling="xml")
