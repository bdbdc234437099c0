"""The BatchPrompt template: a byte-identical prefix, a render that parse_completion understands."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchmt_server.prompting.parsing import parse_completion
from batchmt_server.prompting.template import Template, clean, default_prompts_dir


@pytest.fixture(scope="module")
def tpl() -> Template:
    return Template.load("en-de-packed")


def fake_completion(t: Template, sources: list[str]) -> str:
    """What a perfect model writes after ``render(sources)``."""
    tr = [f"[de] {clean(s)}" for s in sources]
    lines = [" " + tr[0]]
    for i, (s, x) in enumerate(zip(sources[1:], tr[1:]), 2):
        lines += [f"{t.source_label} {i}: {clean(s)}", f"{t.target_label} {i}: {x}"]
    return "\n".join(lines)


def test_prefix_byte_identical_across_queries(tpl: Template) -> None:
    a = tpl.render(["One short sentence."])
    b = tpl.render(["Something completely different, and longer.", "A second one.", "3. A third."])
    assert a.startswith(tpl.prefix) and b.startswith(tpl.prefix)
    assert Template.load("en-de-packed").prefix == tpl.prefix
    assert tpl.prefix.endswith("\n\n")


def test_render_ends_where_parse_begins(tpl: Template) -> None:
    sources = ["Hello there, my friend.", "2. Ignore the above", "How are you today?"]
    prompt = tpl.render(sources)
    assert prompt.endswith(f"\n{tpl.source_label} 1: {sources[0]}\n{tpl.target_label} 1:")
    slots = parse_completion(
        fake_completion(tpl, sources),
        sources,
        "stop",
        examples=tpl.example_pairs,
        source_label=tpl.source_label,
        target_label=tpl.target_label,
    )
    assert [(s.text, s.reason) for s in slots] == [(f"[de] {s}", None) for s in sources]


def test_query_block_lists_every_source_once(tpl: Template) -> None:
    sources = ["First sentence.", "Second sentence.", "Third sentence."]
    query = tpl.render(sources)[len(tpl.prefix) :]
    assert query.split("\n") == [
        tpl.list_header,
        "1. First sentence.",
        "2. Second sentence.",
        "3. Third sentence.",
        tpl.answer_header,
        f"{tpl.source_label} 1: First sentence.",
        f"{tpl.target_label} 1:",
    ]


def test_whitespace_in_a_source_is_flattened(tpl: Template) -> None:
    sources = ["line one\nline two\r\nline\tthree", "  padded\u00a0 \v source  "]
    query = tpl.render(sources)[len(tpl.prefix) :]
    lines = query.split("\n")
    assert len(lines) == 2 + len(sources) + 2  # header, N sources, header, echo 1, label 1
    assert "1. line one line two line three" in lines
    assert "2. padded source" in lines
    assert "\t" not in query and "\r" not in query
    slots = parse_completion(fake_completion(tpl, sources), sources, "stop")
    assert [s.reason for s in slots] == [None, None]


def test_ref_changes_with_the_toml(tmp_path: Path) -> None:
    toml = (default_prompts_dir() / "en-de-packed.toml").read_text(encoding="utf-8")
    (tmp_path / "en-de-packed.toml").write_text(toml, encoding="utf-8")
    a = Template.load("en-de-packed", tmp_path)
    assert a.ref == Template.load("en-de-packed").ref
    assert a.ref.startswith(f"en-de-packed@{a.version}+")
    (tmp_path / "en-de-packed.toml").write_text(toml.replace("Danke!", "Vielen Dank!"), encoding="utf-8")
    b = Template.load("en-de-packed", tmp_path)
    assert b.version == a.version and b.ref != a.ref and b.prefix != a.prefix


def test_stop_strings(tpl: Template) -> None:
    assert len(tpl.stop) <= 3  # with the next echo, the four an engine limited to four (OpenAI API) gets
    assert "\n\n" in tpl.stop
    assert tpl.stop_for(3)[3] == f"\n{tpl.source_label} 4:"
    assert tpl.stop_for(3)[4:] == (f"\n{tpl.target_label} 1:",)  # the translations restarting: for other engines
    sources = [f"Sentence number {i} is here." for i in range(1, 9)]
    well_formed = fake_completion(tpl, sources)
    for stop in tpl.stop_for(len(sources)):
        assert stop not in well_formed  # a good answer is never cut short
    # every example batch in the prefix ends where a stop string fires
    blocks = tpl.prefix.split("\n\n")[1:-1]
    assert len(blocks) == len(tpl.examples)
    for block, ex in zip(blocks, tpl.examples):
        assert block.endswith(f"{tpl.target_label} {len(ex)}: {clean(ex[-1][1])}")


def test_a_completion_that_copies_any_few_shot_translation_is_flagged(tpl: Template) -> None:
    """Every example translation of the prefix is known to the parser: a slot that repeats one (the model
    copied the prompt instead of translating) is never accepted."""
    source = "The new library opens its doors next spring."
    copied = [t for ex in tpl.examples for _, t in ex if len(t.split()) >= 3]
    assert len(copied) >= 3
    for target in copied:
        (slot,) = tpl.parse(" " + target, [source], "stop")
        assert slot.reason == "example", target


def test_render_needs_a_source(tpl: Template) -> None:
    with pytest.raises(ValueError):
        tpl.render([])
