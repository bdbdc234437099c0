"""Protected spans: found, masked, restored, and a damaged translation refused."""

from __future__ import annotations

import pytest

from batchmt_server.text.placeholders import check_masks, find_spans, protect, restore, verify


def spans(text: str) -> list[str]:
    return [text[a:b] for a, b in find_spans(text)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Send it to [PERSON_1] and [PROJECT123].", ["[PERSON_1]", "[PROJECT123]"]),
        ("Hello {name}, you have {0} items {}.", ["{name}", "{0}", "{}"]),
        ("Dear {{ customer }}, see ${HOME}/x.", ["{{ customer }}", "${HOME}"]),
        ("%s failed, %d left, %(user)s here, %5.2f EUR.", ["%s", "%d", "%(user)s", "%5.2f"]),
        (
            "Go to https://example.com/a?b=1. Or www.example.org/docs, please.",
            ["https://example.com/a?b=1", "www.example.org/docs"],
        ),
        ("Mail jane.doe+x@mail.example.co.uk today.", ["jane.doe+x@mail.example.co.uk"]),
        ("Run `pip install x` now.", ["`pip install x`"]),
    ],
)
def test_find_spans(text: str, expected: list[str]) -> None:
    assert spans(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Prices rose 50% of the time and 100%off is no printf.",
        "A [bracketed aside] and [A] single letter, {a b} prose braces.",
        "The U.S. economy grew by 3.5 percent.",
    ],
)
def test_no_false_positives(text: str) -> None:
    assert spans(text) == []


def test_mask_and_restore_round_trip() -> None:
    src = "Hi {name}, [PERSON_1] wrote to a.b@example.com about https://example.com/x."
    p = protect(src)
    assert p.text == "Hi [PH_1], [PH_2] wrote to [PH_3] about [PH_4]."
    # the model may move masks around: German word order
    out = "Hallo [PH_1], [PH_2] hat wegen [PH_4] an [PH_3] geschrieben."
    assert restore(p, out) == "Hallo {name}, [PERSON_1] hat wegen https://example.com/x an a.b@example.com geschrieben."


def test_texts_differing_only_in_placeholders_mask_alike() -> None:
    assert protect("Hello {name}!").text == protect("Hello [PERSON_7]!").text


@pytest.mark.parametrize(
    ("out", "reason"),
    [
        ("Hallo, [PH_2] hat geschrieben.", "missing [PH_1]"),
        ("Hallo [PH_1], [PH_1] und [PH_2].", "unexpected [PH_1]"),
        ("Hallo [PH_1], [PH_2] und [PH_3].", "unexpected [PH_3]"),
        ("Hallo {name}, [PH_2].", "missing [PH_1]"),
        ("Hallo [PH_1], [PH_2] und [PH_2].", "unexpected [PH_2]"),
    ],
)
def test_damaged_translation_is_refused(out: str, reason: str) -> None:
    p = protect("Hi {name}, [PERSON_1] wrote.")
    assert verify(p, out) == reason
    assert restore(p, out) is None


def test_raw_style_verifies_the_spans_themselves() -> None:
    p = protect("The file %s is at https://example.com/f.", "raw")
    assert p.text == "The file %s is at https://example.com/f."
    assert (
        restore(p, "Die Datei %s liegt unter https://example.com/f.")
        == "Die Datei %s liegt unter https://example.com/f."
    )
    assert restore(p, "Die Datei liegt unter https://example.com/f.") is None
    assert restore(p, "Die Datei %s liegt unter https://example.com/g.") is None


def test_repeated_span_must_come_back_as_often() -> None:
    p = protect("%s and %s", "raw")
    assert verify(p, "%s und %s") is None
    assert verify(p, "%s und") == "missing %s"


def test_nothing_protected_nothing_checked() -> None:
    p = protect("Plain sentence.")
    assert p.empty and p.text == "Plain sentence."
    assert restore(p, "Einfacher Satz {x}.") == "Einfacher Satz {x}."


def test_fixed_spans_are_protected_without_detection_and_kept_in_order() -> None:
    text = "Click [TAG_1]here[TAG_2] for {name}."
    fixed = [(6, 13), (17, 24)]
    p = protect(text, detect=False, fixed=fixed)
    assert p.text == "Click [TAG_1]here[TAG_2] for {name}."
    assert p.ordered == ("[TAG_1]", "[TAG_2]")
    assert restore(p, "Klicken Sie [TAG_1]hier[TAG_2] für {name}.") == "Klicken Sie [TAG_1]hier[TAG_2] für {name}."
    assert verify(p, "Klicken Sie [TAG_2]hier[TAG_1].") == "inline tags out of order"
    both = protect(text, fixed=fixed)
    assert both.text == "Click [TAG_1]here[TAG_2] for [PH_3]." and both.ordered == ("[TAG_1]", "[TAG_2]")
    assert verify(both, "[PH_3]: [TAG_1]hier[TAG_2] klicken.") is None
    # the batcher's check sees the same from the engine text alone
    assert check_masks(both.text, "[PH_3]: [TAG_1]hier[TAG_2] klicken.") is None
    assert check_masks(both.text, "[PH_3]: [TAG_2]hier[TAG_1] klicken.") == "inline tags out of order"
    assert check_masks(both.text, "[TAG_1]hier[TAG_2] klicken.") == "missing [PH_3]"
    assert check_masks("No masks here.", "Keine [PH_1] hier.") is None
