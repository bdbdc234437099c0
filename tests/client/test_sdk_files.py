"""translate_file: line alignment, blank lines, resume, failed lines, progress."""

from __future__ import annotations

import io

import httpx
import pytest

import batchmt
from batchmt.files import complete_lines


def write(path, text: str) -> None:
    path.write_bytes(text.encode("utf-8"))


def read(path) -> str:
    return path.read_bytes().decode("utf-8")


def test_translates_line_by_line_keeping_blank_lines(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "One.\n\nTwo.\n   \nThree.\n")
    report = mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "DE<One.>\n\nDE<Two.>\n\nDE<Three.>\n"
    sent = [s for b in fake_server.translate_bodies() for s in b["sentences"]]
    assert sent == ["One.", "Two.", "Three."]  # blank lines are never sent
    assert (report.total_lines, report.translated_lines, report.blank_lines, report.resumed_lines) == (5, 3, 2, 0)
    assert report.ok and report.failed_lines == [] and report.usage.sentences == 3
    assert report.signature == fake_server.signature and report.model == "fake"


def test_last_line_without_newline_and_crlf_input(mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "\ufeffOne.\r\nTwo.")  # BOM, CRLF, no final newline
    mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "DE<One.>\nDE<Two.>\n"


def test_chunks_follow_the_server_limit(fake_server, mt_client, tmp_path):
    fake_server.max_sentences = 3
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    lines = [f"line {i}" if i % 4 else "" for i in range(20)]
    write(src, "\n".join(lines) + "\n")
    report = mt_client.translate_file(src, dst, progress=False)
    out = read(dst).split("\n")[:-1]
    assert out == [f"DE<{line}>" if line else "" for line in lines]
    assert all(len(b["sentences"]) <= 3 for b in fake_server.translate_bodies())
    assert report.translated_lines == 15 and report.blank_lines == 5


def test_resume_skips_complete_lines_and_truncates_a_partial_line(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "One.\nTwo.\n\nFour.\nFive.\n")
    write(dst, "KEEP 1\nKEEP 2\nDE<half-writ")  # 2 complete lines + a partial third
    report = mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "KEEP 1\nKEEP 2\n\nDE<Four.>\nDE<Five.>\n"
    sent = [s for b in fake_server.translate_bodies() for s in b["sentences"]]
    assert sent == ["Four.", "Five."]
    assert report.resumed_lines == 2 and report.total_lines == 5 and report.translated_lines == 2


def test_resume_of_a_complete_output_sends_nothing(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "One.\nTwo.\n")
    write(dst, "A\nB\n")
    report = mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "A\nB\n" and fake_server.translate_bodies() == []
    assert report.resumed_lines == 2 and report.translated_lines == 0


def test_resume_false_overwrites(mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "One.\n")
    write(dst, "old\nstuff\n")
    mt_client.translate_file(src, dst, resume=False, progress=False)
    assert read(dst) == "DE<One.>\n"


def test_refuses_to_resume_an_output_longer_than_the_input(mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "One.\n")
    write(dst, "a\nb\nc\npartial")
    with pytest.raises(batchmt.BatchmtError, match="already has 3 lines but the input has only 1"):
        mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "a\nb\nc\npartial"  # untouched


def test_refuses_to_resume_past_the_end_of_a_stream(mt_client, tmp_path):
    dst = tmp_path / "out.de"
    write(dst, "a\nb\n")
    with pytest.raises(batchmt.BatchmtError, match="cannot resume"):
        mt_client.translate_file(io.StringIO("One.\n"), dst, progress=False)


def test_interrupted_run_resumes_where_it_stopped(fake_server, make_mt_client, tmp_path):
    fake_server.max_sentences = 2
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "".join(f"s{i}\n" for i in range(7)))
    fake_server.script("/v1/translate", fake_server._translate, httpx.Response(400, json={"error": {
        "code": "invalid_json", "message": "boom", "param": None}}))
    with pytest.raises(batchmt.BadRequestError):
        make_mt_client().translate_file(src, dst, progress=False)
    assert read(dst) == "DE<s0>\nDE<s1>\n"  # the first request's lines were flushed
    report = make_mt_client().translate_file(src, dst, progress=False)
    assert read(dst) == "".join(f"DE<s{i}>\n" for i in range(7))
    assert report.resumed_lines == 2
    sent = [s for b in fake_server.translate_bodies() for s in b["sentences"]]
    assert sent.count("s0") == 1 and sent.count("s2") == 2  # s2 was in the failed request


def test_failed_sentences_become_empty_lines_and_are_reported(mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "One.\nFAIL two\n\nFour.\nFAIL five\n")
    report = mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "DE<One.>\n\n\nDE<Four.>\n\n"
    assert report.failed_lines == [2, 5] and not report.ok
    assert report.translated_lines == 2 and report.blank_lines == 1 and report.total_lines == 5


def test_on_failure_raise_stops_before_the_failed_line_and_resume_retries_it(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "One.\n\nFAIL three\nFour.\n")
    with pytest.raises(batchmt.TranslationFailed) as info:
        mt_client.translate_file(src, dst, progress=False, on_failure="raise")
    assert info.value.line_numbers == [3]
    assert "line 3" in str(info.value)
    assert read(dst) == "DE<One.>\n\n"  # everything before line 3, flushed
    assert complete_lines(dst)[0] == 2
    # The server recovers: a rerun resumes at line 3.
    fake_server.mapping["FAIL three"] = "drei"
    original = fake_server._translate

    def no_fail(request):
        response = original(request)
        data = response.json()
        for t in data["translations"]:
            if t["status"] == "failed":
                t.update(text="drei", status="ok", error=None)
        return httpx.Response(200, json=data)

    fake_server.script("/v1/translate", no_fail)
    report = mt_client.translate_file(src, dst, progress=False, on_failure="raise")
    assert read(dst) == "DE<One.>\n\ndrei\nDE<Four.>\n"
    assert report.resumed_lines == 2 and report.ok


def test_translations_with_line_breaks_stay_on_one_line(fake_server, mt_client, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "a\nb\n")
    fake_server.mapping["a"] = "erste\nZeile\r\nmit Umbruch"
    mt_client.translate_file(src, dst, progress=False)
    assert read(dst) == "erste Zeile mit Umbruch\nDE<b>\n"


def test_streams_and_lists(mt_client):
    out = io.StringIO()
    report = mt_client.translate_file(io.StringIO("x\n\ny\n"), out, progress=False)
    assert out.getvalue() == "DE<x>\n\nDE<y>\n" and report.total_lines == 3
    out = io.StringIO()
    mt_client.translate_file(["p", "", "q"], out, progress=False)
    assert out.getvalue() == "DE<p>\n\nDE<q>\n"


def test_progress_bar_goes_to_stderr(mt_client, tmp_path, capsys):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "a\nb\nc\n")
    write(dst, "A\n")
    mt_client.translate_file(src, dst, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "3/3" in captured.err and "line" in captured.err


def test_no_progress_prints_nothing(mt_client, tmp_path, capsys):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    write(src, "a\n")
    mt_client.translate_file(src, dst, progress=False)
    assert capsys.readouterr().err == ""


def test_invalid_on_failure(mt_client, tmp_path):
    with pytest.raises(ValueError):
        mt_client.translate_file(["a"], io.StringIO(), on_failure="ignore")


def test_complete_lines(tmp_path):
    p = tmp_path / "f"
    write(p, "")
    assert complete_lines(p) == (0, 0)
    write(p, "ab\ncd\ne")
    assert complete_lines(p) == (2, 6)
    write(p, "ä\n")
    assert complete_lines(p) == (1, 3)


async def test_async_translate_file_resumes_and_keeps_order(fake_server, make_async_mt_client, tmp_path):
    fake_server.max_sentences = 2
    fake_server.delay = 0.001
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    lines = [f"s{i}" if i % 5 else "" for i in range(30)]
    write(src, "\n".join(lines) + "\n")
    write(dst, "kept\npart")
    async with make_async_mt_client(max_concurrency=3) as client:
        report = await client.translate_file(src, dst, progress=False)
    expected = ["kept"] + [f"DE<{line}>" if line else "" for line in lines[1:]]
    assert read(dst).split("\n")[:-1] == expected
    assert report.resumed_lines == 1 and report.total_lines == 30
    assert fake_server.max_in_flight > 1  # batches of max_concurrency * limit lines in flight
