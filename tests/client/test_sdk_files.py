"""translate_file in every format (text by line and by paragraph, JSONL, CSV, TSV, SRT, PO, XLIFF 1.2
and 2.0, HTML): round trip through the fake server, resume, a failed unit in the middle, a
2,000-character line; plus the rules of resume (fingerprints), streams and the progress bar."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sdk_fakes import FakeServer, error_response

import batchmt
from batchmt.file_translation import RESUME_SUFFIX

srt = pytest.importorskip("srt")
polib = pytest.importorskip("polib")
etree = pytest.importorskip("lxml.etree")

X12 = "urn:oasis:names:tc:xliff:document:1.2"
X20 = "urn:oasis:names:tc:xliff:document:2.0"

# A 2,000-character line of many sentences without a line break: sent as one text, split by the server.
LONG = " ".join(f"Sentence number {i} of a very long line keeps going." for i in range(40))[:2000].rstrip() + "."


def write(path: Path, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))


def read(path: Path) -> str:
    return path.read_bytes().decode("utf-8")


# -- one builder and one reader per format ---------------------------------------------------


def _csv(texts: list[str], delimiter: str) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    w.writerow(["id", "text", "note"])
    for i, t in enumerate(texts):
        w.writerow([f"k{i}", t, f"note {i}"])
    return buf.getvalue()


def _read_csv(out: str, delimiter: str) -> list[str | None]:
    rows = list(csv.DictReader(io.StringIO(out), delimiter=delimiter))
    assert [r["id"] for r in rows] == [f"k{i}" for i in range(len(rows))]  # other columns kept
    assert [r["note"] for r in rows] == [f"note {i}" for i in range(len(rows))]
    return [r["text"] for r in rows]


def _srt(texts: list[str]) -> str:
    return "".join(f"{i + 1}\n00:00:0{i},000 --> 00:00:0{i},900\n{t}\n\n" for i, t in enumerate(texts))


def _read_srt(out: str) -> list[str | None]:
    subs = list(srt.parse(out))
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert [s.start.seconds for s in subs] == list(range(len(subs)))  # timings kept
    return [s.content.replace("\n", " ") for s in subs]


def _po(texts: list[str]) -> str:
    head = (
        'msgid ""\nmsgstr ""\n"Project-Id-Version: demo 1.0\\n"\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
        '"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
    )
    return head + "".join(f'#: app.py:{i}\nmsgid "{t}"\nmsgstr ""\n\n' for i, t in enumerate(texts))


def _read_po(out: str) -> list[str | None]:
    po = polib.pofile(out)
    assert po.metadata["Project-Id-Version"] == "demo 1.0"  # header untouched
    return [e.msgstr for e in po]


def _xliff12(texts: list[str]) -> str:
    units = "".join(f'<trans-unit id="u{i}"><source>{t}</source></trans-unit>' for i, t in enumerate(texts))
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="1.2" xmlns="{X12}"><file original="app" '
        f'source-language="en" datatype="plaintext"><body>{units}</body></file></xliff>\n'
    )


def _read_xliff12(out: str) -> list[str | None]:
    root = etree.fromstring(out.encode())
    assert root.find(f"{{{X12}}}file").get("target-language") == "de"
    units = root.findall(f".//{{{X12}}}trans-unit")
    assert [u.get("id") for u in units] == [f"u{i}" for i in range(len(units))]  # ids kept
    targets = [u.find(f"{{{X12}}}target") for u in units]
    return [t.text if t is not None else None for t in targets]


def _xliff20(texts: list[str]) -> str:
    units = "".join(
        f'<unit id="u{i}"><segment id="s{i}"><source>{t}</source></segment></unit>' for i, t in enumerate(texts)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<xliff version="2.0" xmlns="{X20}" srcLang="en"><file id="f">'
        f"{units}</file></xliff>\n"
    )


def _read_xliff20(out: str) -> list[str | None]:
    root = etree.fromstring(out.encode())
    assert root.get("trgLang") == "de"
    segs = root.findall(f".//{{{X20}}}segment")
    assert [s.get("id") for s in segs] == [f"s{i}" for i in range(len(segs))]
    targets = [s.find(f"{{{X20}}}target") for s in segs]
    return [t.text if t is not None else None for t in targets]


def _html(texts: list[str]) -> str:
    body = "".join(f"<p>{t}</p>\n" for t in texts)
    return f"<!DOCTYPE html>\n<html><head><title>Demo</title></head><body>\n{body}</body></html>\n"


def _read_html(out: str) -> list[str | None]:
    # lang: the target language once the document is translated (the source's when it was kept)
    assert re.match(r'<!DOCTYPE html>\n<html( lang="de")?><head><title>DE\(Demo\)</title>', out), out[:80]
    return re.findall(r"<p>(.*?)</p>", out)


@dataclass
class Fmt:
    name: str
    filename: str
    build: Callable[[list[str]], str]
    parse: Callable[[str], list[str | None]]
    empty: object = ""
    """What a failed unit becomes with on_failure="empty"; SOURCE: the source text stays."""
    kwargs: dict | None = None
    tags: str | None = None


SOURCE = object()
FORMATS = [
    Fmt("text", "in.txt", lambda ts: "".join(t + "\n" for t in ts), lambda out: out.split("\n")[:-1]),
    Fmt(
        "paragraph",
        "in.txt",
        lambda ts: "\n\n".join(ts) + "\n",
        lambda out: out[:-1].split("\n\n"),
        kwargs={"unit": "paragraph"},
    ),
    Fmt(
        "jsonl",
        "in.jsonl",
        lambda ts: "".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(ts)),
        lambda out: [json.loads(line)["text"] for line in out.splitlines()],
    ),
    Fmt("csv", "in.csv", lambda ts: _csv(ts, ","), lambda out: _read_csv(out, ",")),
    Fmt("tsv", "in.tsv", lambda ts: _csv(ts, "\t"), lambda out: _read_csv(out, "\t")),
    Fmt("srt", "in.srt", _srt, _read_srt, empty=SOURCE),
    Fmt("po", "in.po", _po, _read_po),
    Fmt("xliff12", "in.xlf", _xliff12, _read_xliff12, empty=None),
    Fmt("xliff20", "in.xliff", _xliff20, _read_xliff20, empty=None),
    Fmt("html", "in.html", _html, _read_html, empty=SOURCE, tags="html"),
]
IDS = [f.name for f in FORMATS]


def expected(fmt: Fmt, texts: list[str]) -> list[str]:
    fake = FakeServer()
    return [fake.translate_text(t, tags=fmt.tags)["text"] for t in texts]


def run_file(client: batchmt.Client, fmt: Fmt, src: Path, dst: Path, **kwargs) -> batchmt.FileReport:
    return client.translate_file(src, dst, progress=False, **(fmt.kwargs or {}), **kwargs)


# -- every format -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_round_trip_with_a_2000_character_line(fmt, fake_server, mt_client, tmp_path):
    texts = ["The museum is closed on Mondays.", "I lost my keys. Then I found them again.", LONG]
    src, dst = tmp_path / fmt.filename, tmp_path / ("out" + Path(fmt.filename).suffix)
    write(src, fmt.build(texts))
    report = run_file(mt_client, fmt, src, dst)
    assert fmt.parse(read(dst)) == expected(fmt, texts)
    assert report.ok and report.failures == [] and report.format == (fmt.kwargs and "text" or report.format)
    assert not (tmp_path / ("out" + Path(fmt.filename).suffix + RESUME_SUFFIX)).exists()  # removed when done
    sent = fake_server.sent_flat()
    assert any(LONG in s for s in sent)  # the long line went as one text (the server splits it)
    assert report.usage.segments > 40 and isinstance(report.usage.cost, float)


@pytest.mark.parametrize("fmt", FORMATS, ids=IDS)
def test_a_failed_unit_in_the_middle_is_reported_in_place(fmt, mt_client, tmp_path):
    texts = ["First one.", "This one will FAIL.", "Third one."]
    src, dst = tmp_path / fmt.filename, tmp_path / ("out" + Path(fmt.filename).suffix)
    write(src, fmt.build(texts))
    report = run_file(mt_client, fmt, src, dst)
    out = fmt.parse(read(dst))
    good = expected(fmt, texts)
    if fmt.tags:  # one document: its failed sentence stays in English, in place
        assert out == [good[0], texts[1], good[2]]
        assert [f.status for f in report.failures] == ["partial"]
    else:
        assert out == [good[0], texts[1] if fmt.empty is SOURCE else fmt.empty, good[2]]
        assert [f.status for f in report.failures] == ["failed"]
        assert report.translated == 2
    assert not report.ok and report.failures[0].code == "unparseable_output"


@pytest.mark.parametrize("fmt", [f for f in FORMATS if not f.tags], ids=[f.name for f in FORMATS if not f.tags])
def test_interrupted_job_resumes_and_sends_each_unit_once(fmt, fake_server, make_mt_client, tmp_path):
    fake_server.max_sentences = 1  # one unit per request
    texts = [f"Sentence {i}." for i in range(5)]
    src, dst = tmp_path / fmt.filename, tmp_path / ("out" + Path(fmt.filename).suffix)
    write(src, fmt.build(texts))
    fake_server.script(
        "/v1/translate", fake_server._translate, fake_server._translate, error_response(400, "invalid_json", "boom")
    )
    with pytest.raises(batchmt.BadRequestError):
        run_file(make_mt_client(), fmt, src, dst)
    assert not dst.exists()  # written only when complete
    journal = Path(str(dst) + RESUME_SUFFIX)
    assert journal.exists()
    report = run_file(make_mt_client(), fmt, src, dst)
    assert fmt.parse(read(dst)) == expected(fmt, texts)
    assert report.resumed == 2 and report.translated == 3 and not journal.exists()
    sent = fake_server.sent_flat()
    assert sorted(sent) == sorted(texts + [texts[2]])  # only the failed request's unit twice


# -- resume fingerprints ------------------------------------------------------------------------


def _interrupt(fake_server, client, src, dst, **kwargs):
    fake_server.max_sentences = 1
    fake_server.script("/v1/translate", fake_server._translate, error_response(400, "invalid_json", "boom"))
    with pytest.raises(batchmt.BadRequestError):
        client.translate_file(src, dst, progress=False, **kwargs)


def test_resume_refuses_another_input(fake_server, make_mt_client, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    write(src, "a\nb\nc\n")
    _interrupt(fake_server, make_mt_client(), src, dst)
    write(src, "a\nB changed\nc\n")
    with pytest.raises(batchmt.BatchmtError, match="another input") as info:
        make_mt_client().translate_file(src, dst, progress=False)
    assert "pass resume=False" in str(info.value)  # the SDK's words (the CLI says --no-resume)
    report = make_mt_client().translate_file(src, dst, progress=False, resume=False)
    assert read(dst) == "DE<a>\nDE<B changed>\nDE<c>\n" and report.resumed == 0


def test_resume_refuses_other_settings(fake_server, make_mt_client, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(src, '{"a": "x", "b": "y"}\n{"a": "z", "b": "w"}\n')
    _interrupt(fake_server, make_mt_client(), src, dst, field="a")
    with pytest.raises(batchmt.BatchmtError, match=r"other settings \(field: 'a' -> 'b'\)"):
        make_mt_client().translate_file(src, dst, progress=False, field="b")
    with pytest.raises(batchmt.BatchmtError, match=r"quality: None -> 'best'"):
        make_mt_client().translate_file(src, dst, progress=False, field="a", quality="best")
    make_mt_client().translate_file(src, dst, progress=False, field="a")
    assert [json.loads(line) for line in read(dst).splitlines()] == [{"a": "DE<x>", "b": "y"}, {"a": "DE<z>", "b": "w"}]


def test_resume_refuses_a_changed_server_signature(fake_server, make_mt_client, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    write(src, "a\nb\nc\n")
    _interrupt(fake_server, make_mt_client(), src, dst)
    fake_server.signature = "tmpl:other@2|model:bigger"
    with pytest.raises(batchmt.BatchmtError, match="signature changed"):
        make_mt_client().translate_file(src, dst, progress=False)
    assert not dst.exists()


def test_a_complete_output_is_rewritten_not_mixed(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    write(src, "One.\nTwo.\n")
    write(dst, "somebody else's\nfile\nlonger than the input\n")  # no resume file: never mixed in
    report = mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "DE<One.>\nDE<Two.>\n" and report.resumed == 0


def test_on_failure_raise_keeps_the_work_and_a_rerun_retries_the_failed_unit(fake_server, make_mt_client, tmp_path):
    fake_server.max_sentences = 2
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    write(src, "One.\n\nFAIL three\nFour.\nFive.\n")
    with pytest.raises(batchmt.TranslationFailed) as info:
        make_mt_client().translate_file(src, dst, progress=False, on_failure="raise")
    assert info.value.line_numbers == [3] and "line 3" in str(info.value)
    assert not dst.exists()
    fake_server.mapping["FAIL three"] = "drei"  # the server recovers
    report = make_mt_client().translate_file(src, dst, progress=False, on_failure="raise")
    assert read(dst) == "DE<One.>\n\ndrei\nDE<Four.>\nDE<Five.>\n"
    assert report.ok and report.resumed == 1
    assert fake_server.sent_flat().count("One.") == 1 and fake_server.sent_flat().count("FAIL three") == 2


# -- format details -----------------------------------------------------------------------------


def test_text_lines_keep_blank_lines_bom_and_crlf(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "\ufeffOne.\r\n\r\n   \r\nTwo.")
    report = mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "DE<One.>\n\n\nDE<Two.>\n"
    assert fake_server.sent_flat() == ["One.", "Two."]  # blank lines are never sent
    assert (report.total_lines, report.translated_lines, report.blank_lines, report.resumed_lines) == (4, 2, 2, 0)


def test_paragraphs_keep_their_separators_and_inner_line_breaks(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    write(src, "\n\nTitle\n\n\n  - First point. Second.\n  - Third\n \n\nLast one.\n\n")
    report = mt_client.translate_file(src, dst, progress=False, unit="paragraph")
    assert fake_server.sent_flat() == ["Title", "  - First point. Second.\n  - Third", "Last one."]
    assert read(dst) == ("\n\nDE<Title>\n\n\n  DE<- First point.> DE<Second.>\n  DE<- Third>\n \n\nDE<Last one.>\n\n")
    assert report.noun == "paragraph" and report.translated == 3


def test_csv_cells_with_quotes_and_line_breaks(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.csv", tmp_path / "out.csv"
    write(src, 'id,text\n1,"Hello, world."\n2,"Line one.\nLine two."\n3,\n')
    report = mt_client.translate_file(src, dst, progress=False)
    rows = list(csv.reader(io.StringIO(read(dst))))
    assert rows == [["id", "text"], ["1", "DE<Hello, world.>"], ["2", "DE<Line one.>\nDE<Line two.>"], ["3", ""]]
    assert report.skipped == 1 and report.failures == []


def test_csv_named_column(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.tsv", tmp_path / "out.tsv"
    write(src, "key\tsource\tde\nk1\tGood morning.\t\n")
    mt_client.translate_file(src, dst, progress=False, column="source")
    assert read(dst) == "key\tsource\tde\nk1\tDE<Good morning.>\t\n"
    with pytest.raises(batchmt.FileFormatError, match="no column 'nope'"):
        mt_client.translate_file(src, tmp_path / "x.tsv", progress=False, column="nope")


def test_jsonl_keeps_records_without_the_field_and_rejects_bad_json(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(src, '{"text": "Hi.", "n": 1}\n\n{"other": 2}\n{"text": null}\n')
    report = mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == '{"text": "DE<Hi.>", "n": 1}\n\n{"other": 2}\n{"text": null}\n'
    assert report.translated == 1 and report.skipped == 3
    write(src, '{"text": "Hi."}\nnot json\n')
    with pytest.raises(batchmt.FileFormatError, match="line 2 is not valid JSON"):
        mt_client.translate_file(src, dst, progress=False)
    assert fake_server.sent_flat() == ["Hi."]  # the bad file sent nothing


def test_srt_multi_line_subtitles_are_sent_joined(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.srt", tmp_path / "out.srt"
    write(
        src,
        "1\n00:00:01,000 --> 00:00:03,000\nI went to the market\nto buy some fresh bread.\n\n"
        "2\n00:00:04,000 --> 00:00:05,000\n<i>Thank you.</i>\n\n",
    )
    mt_client.translate_file(src, dst, progress=False)
    assert fake_server.sent_flat() == ["I went to the market to buy some fresh bread.", "<i>Thank you.</i>"]
    subs = list(srt.parse(read(dst)))
    assert subs[0].content == "DE<I went to the market\nto buy some fresh bread.>"  # back on two lines
    assert str(subs[1].end) == "0:00:05"


def test_po_plural_forms_and_translated_entries(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.po", tmp_path / "out.po"
    write(
        src,
        'msgid ""\nmsgstr ""\n"Language: de\\n"\n"Plural-Forms: nplurals=2; plural=(n != 1);\\n"\n\n'
        '#: a.c:1\nmsgctxt "menu"\nmsgid "Open"\nmsgstr ""\n\n'
        'msgid "One file"\nmsgid_plural "%d files"\nmsgstr[0] ""\nmsgstr[1] ""\n\n'
        'msgid "Done"\nmsgstr "Fertig"\n\n#~ msgid "Old"\n#~ msgstr ""\n',
    )
    report = mt_client.translate_file(src, dst, progress=False)
    po = polib.pofile(read(dst))
    by_id = {e.msgid: e for e in po}
    assert by_id["Open"].msgstr == "DE<Open>" and by_id["Open"].msgctxt == "menu"
    assert by_id["Open"].occurrences == [("a.c", "1")]
    assert by_id["One file"].msgstr_plural == {0: "DE<One file>", 1: "DE<%d files>"}
    assert by_id["Done"].msgstr == "Fertig"  # already translated: kept, not sent
    assert sorted(fake_server.sent_flat()) == ["%d files", "One file", "Open"]
    assert po.metadata == {"Language": "de", "Plural-Forms": "nplurals=2; plural=(n != 1);"}
    assert report.translated == 3


def test_xliff_inline_markup_goes_as_xml_and_comes_back_as_elements(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.xlf", tmp_path / "out.xlf"
    write(
        src,
        f'<xliff version="1.2" xmlns="{X12}"><file original="a" source-language="en" target-language="de">'
        '<body><trans-unit id="t1"><source>Click <g id="1">here</g> now.</source></trans-unit>'
        '<trans-unit id="t2"><source>Plain.</source><target>Schon da.</target></trans-unit>'
        '<trans-unit id="t3" translate="no"><source>batchmt</source></trans-unit></body></file></xliff>',
    )
    mt_client.translate_file(src, dst, progress=False)
    bodies = fake_server.translate_bodies()
    assert bodies[0]["texts"] == ['Click <g id="1">here</g> now.'] and bodies[0]["tag_handling"] == "xml"
    root = etree.fromstring(read(dst).encode())
    t1 = root.find(f".//{{{X12}}}trans-unit[@id='t1']/{{{X12}}}target")
    assert t1.get("state") == "needs-review-translation"  # machine translation, not reviewed
    assert etree.tostring(t1, encoding="unicode").endswith('>DE(Click) <g id="1">DE(here)</g> DE(now.)</target>')
    assert root.find(f".//{{{X12}}}trans-unit[@id='t2']/{{{X12}}}target").text == "Schon da."
    assert root.find(f".//{{{X12}}}trans-unit[@id='t3']/{{{X12}}}target") is None


def test_missing_format_library_gives_a_clear_error(monkeypatch, mt_client, tmp_path):
    monkeypatch.setitem(__import__("sys").modules, "srt", None)  # as if not installed: import raises
    src = tmp_path / "in.srt"
    write(src, _srt(["Hi."]))
    with pytest.raises(batchmt.FileFormatError, match=r"pip install 'batchmt\[formats\]'"):
        mt_client.translate_file(src, tmp_path / "out.srt", progress=False)


def test_format_override_and_text_too_long_for_the_server(fake_server, mt_client, tmp_path):
    fake_server.max_text_chars = 50
    src, dst = tmp_path / "data.log", tmp_path / "out.log"
    write(src, '{"text": "Short."}\n{"text": "' + "Far too long for this server. " * 3 + '"}\n')
    report = mt_client.translate_file(src, dst, progress=False, format="jsonl")
    assert [json.loads(line)["text"] for line in read(dst).splitlines()] == ["DE<Short.>", ""]
    [failure] = report.failures
    assert failure.code == "text_too_long" and failure.where == "line 2"
    assert fake_server.sent_flat() == ["Short."]  # the long text was never sent


# -- streams, lists, progress, async -------------------------------------------------------------


def test_streams_and_lists(fake_server, mt_client):
    out = io.StringIO()
    report = mt_client.translate_file(io.StringIO("x\n\ny\n"), out, progress=False)
    assert out.getvalue() == "DE<x>\n\nDE<y>\n" and report.total_lines == 3
    out = io.StringIO()
    mt_client.translate_file(["p", "", "q"], out, progress=False)
    assert out.getvalue() == "DE<p>\n\nDE<q>\n"


def test_stream_output_is_written_batch_by_batch(fake_server, mt_client):
    fake_server.max_sentences = 2
    out = io.StringIO()
    seen: list[str] = []
    original = fake_server._translate

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(out.getvalue())
        return original(request)

    fake_server.script("/v1/translate", spy, spy, spy)
    mt_client.translate_file(io.StringIO("a\nb\nc\nd\ne\n"), out, progress=False)
    assert seen == ["", "DE<a>\nDE<b>\n", "DE<a>\nDE<b>\nDE<c>\nDE<d>\n"]


def test_progress_bar_goes_to_stderr(mt_client, tmp_path, capsys):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "a\nb\nc\n")
    mt_client.translate_file(src, dst, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "3/3" in captured.err and "line" in captured.err


def test_no_progress_prints_nothing(mt_client, tmp_path, capsys):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "a\n")
    mt_client.translate_file(src, dst, progress=False)
    assert capsys.readouterr().err == ""


def test_invalid_on_failure(mt_client):
    with pytest.raises(ValueError):
        mt_client.translate_file(["a"], io.StringIO(), on_failure="ignore")


def test_options_are_sent_with_every_request(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    write(src, "One.\n")
    mt_client.translate_file(
        src, dst, progress=False, quality="best", split_sentences="off", preserve_placeholders=False
    )
    body = fake_server.translate_bodies()[0]
    assert (body["quality"], body["split_sentences"], body["preserve_placeholders"]) == ("best", "off", False)


async def test_async_translate_file_resumes_and_keeps_order(fake_server, make_async_mt_client, tmp_path):
    fake_server.max_sentences = 2
    fake_server.delay = 0.001
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    lines = [f"s{i}" if i % 5 else "" for i in range(30)]
    write(src, "\n".join(lines) + "\n")
    fake_server.script("/v1/translate", fake_server._translate, error_response(400, "invalid_json", "boom"))
    async with make_async_mt_client(max_concurrency=1) as client:
        with pytest.raises(batchmt.BadRequestError):
            await client.translate_file(src, dst, progress=False)
    async with make_async_mt_client(max_concurrency=3) as client:
        report = await client.translate_file(src, dst, progress=False)
    assert read(dst).split("\n")[:-1] == [f"DE<{line}>" if line else "" for line in lines]
    assert report.resumed == 2 and report.total_lines == 30
    assert fake_server.max_in_flight > 1  # batches of max_concurrency * limit lines in flight


def test_a_resume_file_cut_short_by_an_interruption_still_resumes(fake_server, make_mt_client, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    write(src, "a\nb\nc\n")
    _interrupt(fake_server, make_mt_client(), src, dst)
    journal = Path(str(dst) + RESUME_SUFFIX)
    with journal.open("a", encoding="utf-8") as f:
        f.write('{"signature": "s", "results": [[1, {"text": "half')  # killed mid-write
    report = make_mt_client().translate_file(src, dst, progress=False)
    assert read(dst) == "DE<a>\nDE<b>\nDE<c>\n" and report.resumed == 1


def test_a_foreign_resume_file_is_refused(mt_client, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    write(src, "a\n")
    Path(str(dst) + RESUME_SUFFIX).write_text("not json\n", encoding="utf-8")
    with pytest.raises(batchmt.BatchmtError, match="not one this batchmt version wrote"):
        mt_client.translate_file(src, dst, progress=False)
