"""The ``batchmt`` CLI, driven through ``main(argv, client_factory=...)`` over the fake server."""

from __future__ import annotations

import io
import json
import sys

import httpx
import pytest
from sdk_fakes import error_response

import batchmt
from batchmt import cli


@pytest.fixture
def run(fake_server, capsys, monkeypatch):
    """Run the CLI against the fake server; returns (exit code, stdout, stderr, client options)."""
    seen: list[dict] = []

    def factory(**options):
        seen.append(options)
        client = batchmt.Client(transport=fake_server.transport(), **options)
        client._sleep = lambda s: None
        return client

    def _run(*argv: str, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        code = cli.main(list(argv), client_factory=factory)
        out, err = capsys.readouterr()
        return code, out, err, (seen[-1] if seen else None)

    return _run


def test_translate_stdin_to_stdout(run, fake_server):
    code, out, err, _ = run("translate", stdin="Hello.\n\nWorld.\n")
    assert code == 0
    assert out == "DE<Hello.>\n\nDE<World.>\n"
    assert "2 lines translated (1 blank)" in err
    assert fake_server.sent() == [["Hello.", "World."]]


def test_translate_files_with_resume(run, fake_server, tmp_path):
    fake_server.max_sentences = 1
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    src.write_text("a\nb\nc\n", encoding="utf-8")
    fake_server.script("/v1/translate", fake_server._translate, error_response(400, "invalid_json", "boom"))
    code, _, err, _ = run("translate", "-i", str(src), "-o", str(dst), "--no-progress")
    assert code == 1 and "boom" in err and not dst.exists()
    code, out, err, _ = run("translate", "-i", str(src), "-o", str(dst), "--no-progress")
    assert code == 0 and out == ""
    assert dst.read_text(encoding="utf-8") == "DE<a>\nDE<b>\nDE<c>\n"
    assert "1 kept from before" in err and f"to {dst}" in err
    assert fake_server.sent_flat() == ["a", "b", "b", "c"]


def test_resume_refusal_speaks_the_cli_flag(run, fake_server, tmp_path):
    fake_server.max_sentences = 1
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    src.write_text("a\nb\n", encoding="utf-8")
    fake_server.script("/v1/translate", fake_server._translate, error_response(400, "invalid_json", "boom"))
    assert run("translate", "-i", str(src), "-o", str(dst))[0] == 1
    code, _, err, _ = run("translate", "-i", str(src), "-o", str(dst), "--quality", "best")
    assert code == 1 and "other settings" in err and "quality" in err
    assert "--no-resume" in err and "resume=False" not in err
    code, _, err, _ = run("translate", "-i", str(src), "-o", str(dst), "--quality", "best", "--no-resume")
    assert code == 0 and dst.read_text(encoding="utf-8") == "DE<a>\nDE<b>\n"


def test_translate_sends_quality_and_text_options(run, fake_server):
    code, out, _, _ = run(
        "translate", "--quality", "best", "--split-sentences", "newlines", "--no-placeholders", stdin="Hi.\n"
    )
    assert code == 0 and out == "DE<Hi.>\n"
    body = fake_server.translate_bodies()[0]
    assert body["quality"] == "best" and body["split_sentences"] == "newlines"
    assert body["preserve_placeholders"] is False and body["texts"] == ["Hi."]


def test_translate_jsonl_field_and_paragraphs(run, fake_server, tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text('{"id": 1, "body": "Hello."}\n', encoding="utf-8")
    assert run("translate", "-i", str(src), "-o", str(dst), "--field", "body")[0] == 0
    assert json.loads(dst.read_text(encoding="utf-8")) == {"id": 1, "body": "DE<Hello.>"}
    src, dst = tmp_path / "doc.txt", tmp_path / "doc.de"
    src.write_text("One. Two.\nThree.\n\nFour.\n", encoding="utf-8")
    code, _, err, _ = run("translate", "-i", str(src), "-o", str(dst), "--unit", "paragraph")
    assert code == 0 and "2 paragraphs translated" in err
    assert dst.read_text(encoding="utf-8") == "DE<One.> DE<Two.>\nDE<Three.>\n\nDE<Four.>\n"


def test_translate_format_errors_are_clear(run, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,body\n1,Hello\n", encoding="utf-8")
    code, _, err, _ = run("translate", "-i", str(src), "-o", str(tmp_path / "o.csv"))
    assert code == 1 and "no column 'text'" in err and "'body'" in err and "--column" in err


def test_translate_no_resume(run, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    src.write_text("a\n", encoding="utf-8")
    dst.write_text("old\nold\n", encoding="utf-8")
    assert run("translate", "-i", str(src), "-o", str(dst), "--no-resume")[0] == 0
    assert dst.read_text(encoding="utf-8") == "DE<a>\n"


def test_translate_failed_lines_exit_3_with_a_report(run):
    code, out, err, _ = run("translate", stdin="ok\nFAIL\nok too. FAIL too.\n")
    assert code == cli.EXIT_PARTIAL == 3
    assert out == "DE<ok>\n\n\n"  # a failed and a partial line: left empty
    assert "2 lines could not be translated" in err and "line 2, line 3" in err


def test_translate_writes_suspect_lines_and_notes_them_exit_0(run):
    code, out, err, _ = run("translate", stdin="ok\nPlease COPY me.\n")
    assert code == cli.EXIT_OK
    assert out == "DE<ok>\nPlease COPY me.\n"  # delivered: the model's own answer, though a copy
    assert "1 line written but suspect" in err and "line 2" in err


def test_translate_on_failure_source_keeps_the_source(run):
    code, out, err, _ = run("translate", "--on-failure", "source", stdin="ok\nFAIL\nok too. FAIL too.\n")
    assert code == 3
    assert out == "DE<ok>\nFAIL\nDE<ok too.> FAIL too.\n"
    assert "kept in the source language" in err


def test_translate_on_failure_raise_exits_1_without_traceback(run, tmp_path):
    src, dst = tmp_path / "in.en", tmp_path / "out.de"
    src.write_text("ok\nFAIL\nlater\n", encoding="utf-8")
    code, out, err, _ = run("translate", "-i", str(src), "-o", str(dst), "--on-failure", "raise")
    assert code == 1
    assert not dst.exists() and "a rerun resumes there" in err
    assert "line 2" in err and "Traceback" not in err


def test_api_error_gives_a_clear_message_and_exit_1(run, fake_server):
    fake_server.script("/v1/translate", error_response(422, "unsupported_language_pair", "only en-de", "target_lang"))
    code, out, err, _ = run("translate", "--target-lang", "fr", stdin="Hi\n")
    assert code == 1 and out == ""
    assert "unsupported_language_pair" in err and "only en-de" in err and "[target_lang]" in err
    assert "Traceback" not in err


def test_auth_error_hints_at_the_api_key(run, fake_server):
    fake_server.script("/v1/translate", error_response(401, "unauthorized", "bad key"))
    code, _, err, _ = run("translate", stdin="Hi\n")
    assert code == 1 and "BATCHMT_API_KEY" in err


def test_connection_error_hints_at_the_base_url(run, fake_server):
    fake_server.script("/v1/translate", *[httpx.ConnectError("refused")] * 3)
    code, _, err, _ = run("--max-retries", "2", "translate", stdin="Hi\n")
    assert code == 1 and "refused" in err and "BATCHMT_BASE_URL" in err


def test_missing_input_file(run, tmp_path):
    code, _, err, _ = run("translate", "-i", str(tmp_path / "nope.txt"))
    assert code == 1 and "nope.txt" in err and "Traceback" not in err


def test_global_options_before_or_after_the_command(run):
    _, _, _, options = run(
        "--base-url", "http://a:1", "--api-key", "k", "--timeout", "5", "--max-retries", "1", "health"
    )
    assert options == {"base_url": "http://a:1", "api_key": "k", "timeout": 5.0, "max_retries": 1}
    _, _, _, options = run("--base-url", "http://a:1", "health", "--api-key", "k2")
    assert options == {"base_url": "http://a:1", "api_key": "k2"}


def test_env_is_used_when_no_option_is_given(run, monkeypatch, fake_server):
    monkeypatch.setenv("BATCHMT_API_KEY", "from-env")
    code, _, _, options = run("health")
    assert code == 0 and options == {}
    assert fake_server.requests[0].headers["authorization"] == "Bearer from-env"


def test_usage_errors_exit_2(run, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["translate", "--timeout", "-1"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2


def test_health_ready(run):
    code, out, _, _ = run("health")
    assert code == 0 and "live, ready" in out


def test_health_not_ready(run, fake_server):
    fake_server.ready = False
    code, out, _, _ = run("health")
    assert code == 1 and "not ready" in out and "not_ready" in out


def test_health_unreachable(run, fake_server):
    fake_server.script("/healthz", httpx.ConnectError("refused"))
    code, _, err, _ = run("health")
    assert code == 1 and "Connection error" in err


def test_info_prints_json(run):
    code, out, _, _ = run("info")
    assert code == 0 and json.loads(out)["limits"]["max_sentences_per_request"] == 128


def _eval_files(tmp_path, fake_server, n=6):
    # Synthetic sentences (never the shared test sets); the fake server "translates" perfectly
    # except for sentence 3, so BLEU and chrF are high but not 100.
    sources = [f"This is synthetic test sentence number {i} about the weather." for i in range(n)]
    refs = [f"Das ist der synthetische Testsatz Nummer {i} über das Wetter." for i in range(n)]
    for s, r in zip(sources, refs):
        fake_server.mapping[s] = r
    fake_server.mapping[sources[3]] = "Etwas ganz anderes."
    src, ref = tmp_path / "src.en", tmp_path / "ref.de"
    src.write_text("\n".join(sources) + "\n", encoding="utf-8")
    ref.write_text("\n".join(refs) + "\n", encoding="utf-8")
    return src, ref, refs


def test_eval_prints_bleu_and_chrf_with_signatures_and_writes_hypotheses(run, fake_server, tmp_path):
    src, ref, refs = _eval_files(tmp_path, fake_server)
    hyp = tmp_path / "hyp.de"
    code, out, err, _ = run("eval", "--src", str(src), "--ref", str(ref), "--limit", "5", "--hyp-out", str(hyp))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("BLEU|nrefs:1|") and "tok:13a" in lines[0] and "version:" in lines[0]
    assert lines[1].startswith("chrF2|nrefs:1|") and "nc:6" in lines[1]
    bleu = float(lines[0].split(" = ")[1].split()[0])
    chrf = float(lines[1].split(" = ")[1].split()[0])
    assert 30 < bleu < 100 and 30 < chrf < 100
    assert f"sentences: 5  failed: 0  server: {fake_server.signature}" in out
    hyps = hyp.read_text(encoding="utf-8").splitlines()
    assert len(hyps) == 5 and hyps[0] == refs[0] and hyps[3] == "Etwas ganz anderes."
    assert len(fake_server.sent_flat()) == 5  # --limit honoured


def test_eval_perfect_hypotheses_score_100_in_json(run, fake_server, tmp_path):
    src, ref, refs = _eval_files(tmp_path, fake_server)
    code, out, _, _ = run("eval", "--src", str(src), "--ref", str(ref), "--limit", "3", "--json")
    data = json.loads(out)
    assert code == 0 and data["sentences"] == 3 and data["failed"] == 0
    assert data["bleu"]["score"] == pytest.approx(100.0) and data["chrf"]["score"] == pytest.approx(100.0)
    assert data["bleu"]["signature"].startswith("nrefs:1|") and data["server_signature"] == fake_server.signature
    assert data["usage"]["sentences"] == 3


def test_eval_counts_failed_sentences(run, fake_server, tmp_path):
    src, ref = tmp_path / "src.en", tmp_path / "ref.de"
    src.write_text("good\nFAIL\n", encoding="utf-8")
    ref.write_text("gut\nschlecht\n", encoding="utf-8")
    code, out, err, _ = run("eval", "--src", str(src), "--ref", str(ref))
    assert code == 0 and "failed: 1" in out and "1 sentences failed" in err


def test_eval_rejects_misaligned_files(run, tmp_path):
    src, ref = tmp_path / "src.en", tmp_path / "ref.de"
    src.write_text("a\nb\nc\n", encoding="utf-8")
    ref.write_text("a\nb\n", encoding="utf-8")
    code, out, err, _ = run("eval", "--src", str(src), "--ref", str(ref))
    assert code == 1 and "has 3 lines" in err and out == ""
    assert run("eval", "--src", str(src), "--ref", str(ref), "--limit", "2")[0] == 0


def test_main_without_factory_uses_the_real_client(monkeypatch, capsys):
    # Nothing listens on port 9: the real Client reports a connection error, no traceback.
    code = cli.main(["--base-url", "http://127.0.0.1:9", "--max-retries", "0", "--timeout", "2", "health"])
    assert code == 1 and "Connection error" in capsys.readouterr().err


def test_bad_base_url(capsys):
    assert cli.main(["--base-url", "localhost:8000", "health"]) == 1
    assert "base_url must start with http" in capsys.readouterr().err


def test_eval_sends_quality(run, fake_server, tmp_path):
    src, ref, _ = _eval_files(tmp_path, fake_server, n=4)
    code, out, _, _ = run("eval", "--src", str(src), "--ref", str(ref), "--quality", "best", "--json")
    assert code == 0 and {b["quality"] for b in fake_server.translate_bodies()} == {"best"}
    assert json.loads(out)["usage"]["currency"] == "USD"
