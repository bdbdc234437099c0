"""Golden tests for server-side segmentation: the classic traps, layout kept byte for byte."""

from __future__ import annotations

import pytest

from batchmt_server.text.segmenter import cut_long, segment_text

# (text, expected segments) in mode "on"
GOLDEN = [
    ("Dr. Smith arrived on Monday. He left early.", ["Dr. Smith arrived on Monday.", "He left early."]),
    ("The U.S. economy grew. Analysts were surprised.", ["The U.S. economy grew.", "Analysts were surprised."]),
    ("Use a separator, e.g. a comma. Then save.", ["Use a separator, e.g. a comma.", "Then save."]),
    ("Bring fruit, z. B. apples. We start at noon.", ["Bring fruit, z. B. apples.", "We start at noon."]),
    ("Prices rose by 3.5 percent. Version 2.0 is out.", ["Prices rose by 3.5 percent.", "Version 2.0 is out."]),
    ("Wait... what happened? Nobody knew!", ["Wait... what happened?", "Nobody knew!"]),
    ('He said, "It is over." Then he left.', ['He said, "It is over."', "Then he left."]),
    ("'Really?' she asked. 'Yes.'", ["'Really?' she asked.", "'Yes.'"]),
    (
        "Mr. and Mrs. Jones met Prof. Lee in St. Louis. It rained.",
        ["Mr. and Mrs. Jones met Prof. Lee in St. Louis.", "It rained."],
    ),
    ("I saw it at 10 a.m. Then it was gone.", ["I saw it at 10 a.m.", "Then it was gone."]),
    ("Visit https://example.com/a.b?x=1. It has the docs.", ["Visit https://example.com/a.b?x=1.", "It has the docs."]),
    ("Write to jane.doe@example.org. I reply fast.", ["Write to jane.doe@example.org.", "I reply fast."]),
    ("See Fig. 3 for details. The results are clear.", ["See Fig. 3 for details.", "The results are clear."]),
    # bullets and numbered lists: the marker is layout, the item is a segment
    ("- first item\n- second item", ["first item", "second item"]),
    ("* starred\n+ plus\n• dot", ["starred", "plus", "dot"]),
    (
        "1. Open the box.\n2. Take the book. Read it.\n10) Close it.",
        ["Open the box.", "Take the book.", "Read it.", "Close it."],
    ),
    ("a) small\n(3) bracketed", ["small", "bracketed"]),
    # lines without letters are layout
    ("Title\n-----\n\n12:30\nBody text.", ["Title", "Body text."]),
    # a tab inside a line separates columns
    ("Name\tCity\nAnna Berg\tBerlin is big. Really.", ["Name", "City", "Anna Berg", "Berlin is big.", "Really."]),
]


@pytest.mark.parametrize(("text", "expected"), GOLDEN)
def test_golden(text: str, expected: list[str]) -> None:
    seg = segment_text(text)
    assert list(seg.segments) == expected
    assert seg.text == text


LAYOUT = [
    "One. Two.\n\nThree.\n",
    "Line one.\r\nLine two.\r\n\r\nLine four.\r\n",
    "  indented sentence.  \n\ttabbed one.\t\n",
    "trailing spaces.   \n   \n- bullet one \n  - nested bullet\n    1. numbered\n",
    "\n\n  leading blank lines. And two sentences.\n\n\n",
    "old mac\rline ends\r",
    "form\x0cfeed and\u2028line separator",
    "mixed\r\n\n\r\nbreaks. Yes.",
    "no newline at the end",
]


@pytest.mark.parametrize("mode", ["on", "newlines", "off"])
@pytest.mark.parametrize("text", LAYOUT)
def test_identity_reassembly_is_byte_exact(text: str, mode: str) -> None:
    seg = segment_text(text, mode)  # type: ignore[arg-type]
    assert seg.join(list(seg.segments)) == text
    assert len(seg.separators) == len(seg.segments) + 1
    for s in seg.segments:
        assert s == s.strip() and s


def test_translations_land_between_the_original_separators() -> None:
    text = "- Good morning.  How are you?\r\n\r\n\t2. Fine,  thanks.  \n"
    seg = segment_text(text)
    assert seg.segments == ("Good morning.", "How are you?", "Fine,  thanks.")
    out = seg.join(["Guten Morgen.", "Wie geht es dir?", "Gut, danke."])
    assert out == "- Guten Morgen.  Wie geht es dir?\r\n\r\n\t2. Gut, danke.  \n"


def test_modes() -> None:
    text = "First one. Second one.\nThird line.\n\n"
    assert segment_text(text, "on").segments == ("First one.", "Second one.", "Third line.")
    assert segment_text(text, "newlines").segments == ("First one. Second one.", "Third line.")
    off = segment_text(text, "off")
    assert off.segments == ("First one. Second one.\nThird line.",)
    assert off.separators == ("", "\n\n")
    with pytest.raises(ValueError):
        segment_text(text, "sometimes")  # type: ignore[arg-type]


def test_empty_and_letterless_texts_have_no_segments() -> None:
    for text in ["", "   \n\t", "---", "42", "  * \n"]:
        seg = segment_text(text)
        assert seg.segments == ()
        assert seg.text == text


def test_a_bullet_without_text_after_it_is_not_a_marker() -> None:
    # "- " alone stays layout; "-5 degrees" has no space after the dash: not a marker
    assert segment_text("-5 degrees today.").segments == ("-5 degrees today.",)


def test_long_segment_is_cut_at_clause_boundaries() -> None:
    clause = "the river rose slowly over the old stone bridge"
    text = "; ".join([clause] * 30) + "."  # ~1,470 characters, no sentence end before the last
    seg = segment_text(text, max_chars=200)
    assert len(seg.segments) > 1
    assert all(len(s) <= 200 for s in seg.segments)
    assert all(s.endswith((";", ".")) for s in seg.segments)  # cut after a clause, not mid-clause
    assert seg.text == text


def test_long_segment_without_clauses_is_cut_at_spaces() -> None:
    text = " ".join(["word"] * 600)
    seg = segment_text(text, "off", max_chars=100)
    assert all(len(s) <= 100 for s in seg.segments)
    assert all(s.split(" ") == ["word"] * len(s.split(" ")) for s in seg.segments)
    assert seg.text == text


def test_long_run_without_spaces_is_cut_hard_but_not_inside_a_kept_span() -> None:
    text = "x" * 250
    spans = cut_long(text, 0, len(text), 100)
    assert spans == [(0, 100), (100, 200), (200, 250)]
    spans = cut_long(text, 0, len(text), 100, keep=[(90, 120)])
    assert spans[0] == (0, 90)
    assert "".join(text[a:b] for a, b in spans) == text


def test_kept_spans_are_not_split_and_do_not_count_as_text() -> None:
    text = "Call {user.name}. Now. See https://a.example/x. End."
    keep = [(5, 16), (27, 46)]
    assert text[5:16] == "{user.name}" and text[27:46] == "https://a.example/x"
    seg = segment_text(text, keep=keep)
    assert seg.text == text
    for a, b in keep:
        assert any(text[a:b] in s for s in seg.segments)
    only_url = "https://a.example/x\nText here."
    assert segment_text(only_url, keep=[(0, 19)]).segments == ("Text here.",)
