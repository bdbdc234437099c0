"""The ``batchmt`` command line tool.

    batchmt [--base-url URL] [--api-key KEY] [--timeout S] [--max-retries N] COMMAND ...

    batchmt translate [-i FILE] [-o FILE]   translate a file in its format (stdin → stdout by default)
    batchmt eval --src FILE --ref FILE      translate a test set and print BLEU and chrF
    batchmt health                          is the server live and ready?
    batchmt info                            the server's /v1/info as JSON

Tests (or embedding programs) call ``main(argv, client_factory=...)``; the factory receives the
client options as keyword arguments and returns a :class:`~batchmt.Client`.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ._batch_cli import add_batch_commands, translate_as_job
from ._memory_cli import add_memory_commands
from .client import Client
from .errors import APIConnectionError, APIError, AuthenticationError, BatchmtError, TranslationFailed
from .file_translation import ON_FAILURE, read_lines, read_output
from .formats import FORMATS, UNITS
from .version import __version__

__all__ = ["main", "build_parser", "ClientFactory", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_PARTIAL"]

ClientFactory = Callable[..., Client]

EXIT_OK = 0
EXIT_ERROR = 1  # API, connection or file error; the server is not ready (health)
EXIT_USAGE = 2  # bad command line (argparse)
EXIT_PARTIAL = 3  # translate: finished, but some units failed (left empty or in the source language)
EXIT_INTERRUPTED = 130
QUALITIES = ("fast", "balanced", "best")
SPLITS = ("on", "newlines", "off")

_EPILOG = """\
environment: BATCHMT_BASE_URL (default http://127.0.0.1:8000), BATCHMT_API_KEY.
exit codes: 0 ok; 1 error (API, connection, file; health: not ready); 2 usage;
3 translate finished but some lines/segments failed (reported, left per --on-failure); 130 interrupted."""


def _add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    # The same options on the main parser and on every sub-command, so they may come before or
    # after the command. On sub-commands the default is SUPPRESS, not to overwrite a value given
    # before the command.
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    group = parser.add_argument_group("server options")
    group.add_argument("--base-url", metavar="URL", help="server URL (env BATCHMT_BASE_URL)", **default)
    group.add_argument(
        "--api-key", metavar="KEY", help="API key, sent as a Bearer token (env BATCHMT_API_KEY)", **default
    )
    group.add_argument("--timeout", metavar="SECONDS", type=_positive_float, help="per-request timeout", **default)
    group.add_argument("--max-retries", metavar="N", type=_non_negative_int, help="retries per request", **default)


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be > 0")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="batchmt",
        description="Client of a batchmt English→German translation server.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"batchmt {__version__}")
    _add_global_options(parser, suppress=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = commands.add_parser(
        "translate",
        help="translate a file (text, JSONL, CSV/TSV, SRT, PO, XLIFF, HTML)",
        description=(
            "Translate a file into the same format. The format comes from the input's extension "
            "(.txt and anything unknown: text, one line at a time; .jsonl; .csv; .tsv; .srt; .po/.pot; "
            ".xlf/.xliff; .html) or --format. Each line (or paragraph, or field, cell, subtitle, "
            "message, unit) is sent as one text; the server splits it into sentences. Blank lines "
            "are kept. Progress is saved next to OUTPUT (OUTPUT.batchmt-resume) while the job runs: "
            "run the same command again to resume an interrupted job; it refuses when the input or "
            "the settings changed (use --no-resume to start over). OUTPUT is written at the end."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-i", "--input", metavar="FILE", default="-", help="input file (default: stdin)")
    p.add_argument("-o", "--output", metavar="FILE", default="-", help="output file (default: stdout)")
    p.add_argument("--format", choices=FORMATS, help="the input's format (default: from the extension of --input)")
    p.add_argument(
        "--unit",
        choices=UNITS,
        default="line",
        help="text files: translate each line (default) or each blank-line separated paragraph",
    )
    p.add_argument("--field", default="text", help="JSONL: the field to translate (default: text)")
    p.add_argument("--column", default="text", help="CSV/TSV: the column to translate, by its header (default: text)")
    p.add_argument("--source-lang", default="en")
    p.add_argument("--target-lang", default="de")
    _add_translation_options(p)
    p.add_argument("--no-resume", action="store_true", help="start over instead of resuming an interrupted job")
    p.add_argument(
        "--as-job",
        action="store_true",
        help="run it as a batch job on the server (text files: upload, "
        "wait with a progress bar, write the output); the job survives this command and server restarts",
    )
    p.add_argument(
        "--on-failure",
        choices=ON_FAILURE,
        default="empty",
        help="a line/segment the server could not translate: leave it empty (default: an empty line, "
        "cell or msgstr, no XLIFF target; SRT and HTML keep the source) or keep the source text (source), "
        "go on, and exit with status 3 at the end; or stop there with status 1 (raise)",
    )
    p.add_argument(
        "--no-review-marks",
        dest="review",
        action="store_false",
        help="do not mark machine translation for review (PO entries are marked fuzzy, XLIFF targets "
        "needs-review-translation/mt-suggestion, by default)",
    )
    _add_progress_options(p)
    _add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_translate)

    p = commands.add_parser(
        "eval",
        help="translate a test set and score it with sacrebleu (BLEU, chrF)",
        description="Translate SRC through the server and print corpus BLEU and chrF against REF, "
        "with sacrebleu's signatures.",
    )
    p.add_argument("--src", required=True, metavar="FILE", help="source sentences, one per line")
    p.add_argument("--ref", required=True, metavar="FILE", help="reference translations, aligned with --src")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N sentences")
    p.add_argument("--hyp-out", metavar="FILE", help="also write the hypotheses to FILE")
    p.add_argument("--resume", action="store_true", help="resume an interrupted run writing --hyp-out")
    p.add_argument("--quality", choices=QUALITIES, help="fast (one pass), balanced (3 rounds) or best (5 rounds)")
    p.add_argument("--json", action="store_true", help="print the scores as JSON")
    _add_progress_options(p)
    _add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_eval)

    p = commands.add_parser("health", help="check that the server is live and ready (exit 0) or not (exit 1)")
    _add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_health)

    p = commands.add_parser("info", help="print the server's /v1/info as JSON")
    _add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_info)

    add_batch_commands(commands, _add_global_options, _add_progress_options)
    add_memory_commands(commands, _add_global_options)
    return parser


def _add_translation_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("translation options (default: the server's)")
    g.add_argument("--quality", choices=QUALITIES, help="fast (one pass), balanced (3 rounds) or best (5 rounds)")
    g.add_argument(
        "--split-sentences",
        choices=SPLITS,
        help="on: split each text at sentence punctuation and line breaks (the server's default); "
        "newlines: at line breaks only; off: each text is one sentence",
    )
    g.add_argument("--tag-handling", choices=("html", "xml"), help="the texts contain HTML or XML markup")
    g.add_argument(
        "--no-placeholders",
        dest="preserve_placeholders",
        action="store_const",
        const=False,
        default=None,
        help="do not protect placeholders ({name}, %%s, URLs, ...) from translation",
    )
    g.add_argument(
        "--glossary",
        metavar="FILE|ID",
        help="a glossary: its id on the server, or a .tsv/.csv/.tmx file (uploaded as a glossary for this run)",
    )
    g.add_argument(
        "--formality",
        choices=("default", "more", "less", "prefer_more", "prefer_less"),
        help="German register: more (Sie) / less (du), enforced; prefer_more / prefer_less, a preference",
    )
    g.add_argument(
        "--source-lang-check",
        choices=("flag", "strict", "off"),
        help="a text not in --source-lang: flag it (written, noted as suspect: the server's default), strict "
        "(the run stops with source_lang_mismatch) or off (no check)",
    )


def _add_progress_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--progress",
        dest="progress",
        action="store_const",
        const=True,
        default=None,
        help="always show a progress bar on stderr (default: only when stderr is a terminal)",
    )
    g.add_argument("--no-progress", dest="progress", action="store_const", const=False, help="no progress bar")


def _client_options(args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for name in ("base_url", "api_key", "timeout", "max_retries"):
        value = getattr(args, name, None)
        if value is not None:
            options[name] = value
    return options


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _err(message: str) -> None:
    print(f"batchmt: {message}", file=sys.stderr)


# -- commands ------------------------------------------------------------------------------------


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _glossary(client: Client, args: argparse.Namespace) -> tuple[str | None, bool]:
    """``--glossary FILE|ID``: the glossary id to send, and whether this run created it (from a file)."""
    value = getattr(args, "glossary", None)
    if not value:
        return None, False
    if os.path.isfile(value):
        g = client.glossaries.create_from_file(value, source_lang=args.source_lang, target_lang=args.target_lang)
        _err(f"glossary {g.glossary_id} created from {value} ({g.entry_count} entries)")
        return g.glossary_id, True
    if os.sep in value or value.lower().endswith((".tsv", ".csv", ".tmx")):
        raise ValueError(f"--glossary {value}: no such file (give a file, or a glossary id such as gl-...)")
    return value, False


def _cmd_translate(client: Client, args: argparse.Namespace) -> int:
    args.glossary_id, temporary = _glossary(client, args)
    if args.as_job:
        if temporary:
            _err(f"the batch uses glossary {args.glossary_id}; delete it when the batch is done")
        return translate_as_job(client, args)
    try:
        return _translate_file(client, args)
    finally:
        if temporary:
            client.glossaries.delete(args.glossary_id)


def _translate_file(client: Client, args: argparse.Namespace) -> int:
    src: Any = sys.stdin if args.input == "-" else args.input
    if src is sys.stdin and _isatty(sys.stdin):
        _err("reading sentences from the terminal, one per line; end with Ctrl-D (see -i FILE)")
    dst: Any = sys.stdout if args.output == "-" else args.output
    report = client.translate_file(
        src,
        dst,
        source_lang=args.source_lang,
        target_lang=args.target_lang,
        resume=not args.no_resume,
        progress=args.progress,
        on_failure=args.on_failure,
        format=args.format,
        unit=args.unit,
        field=args.field,
        column=args.column,
        quality=args.quality,
        split_sentences=args.split_sentences,
        tag_handling=args.tag_handling,
        preserve_placeholders=args.preserve_placeholders,
        glossary=args.glossary_id,
        formality=args.formality,
        source_lang_check=args.source_lang_check,
        restart_hint="use --no-resume",
        review=args.review,
    )
    where = "" if dst is sys.stdout else f" to {args.output}"
    noun = report.noun
    blank = "blank" if report.format == "text" else "with nothing to translate"
    resumed = f", {report.resumed} kept from before" if report.resumed else ""
    _err(
        f"{_plural(report.translated, noun)} translated{where} ({report.skipped} {blank}{resumed}); "
        f"{report.usage.completion_tokens} completion tokens"
    )
    if report.suspect:
        shown = ", ".join(f.where for f in report.suspect[:20]) + (" ..." if len(report.suspect) > 20 else "")
        _err(
            f"note: {_plural(len(report.suspect), noun)} written but suspect (still a copy of the source or a loop "
            f"after a second try; worth a look): {shown}"
        )
    if report.failures:
        shown = ", ".join(f.where for f in report.failures[:20]) + (" ..." if len(report.failures) > 20 else "")
        kept = "kept in the source language" if args.on_failure == "source" else "left untranslated"
        _err(f"warning: {_plural(len(report.failures), noun)} could not be translated and are {kept}: {shown}")
        return EXIT_PARTIAL
    return EXIT_OK


def _cmd_eval(client: Client, args: argparse.Namespace) -> int:
    from .evaluation import require_sacrebleu

    try:
        require_sacrebleu()  # before any translation: the scores need it
    except ImportError as exc:
        _err(f"error: {exc}")
        return EXIT_ERROR
    sources = read_lines(args.src, limit=args.limit)
    references = read_lines(args.ref, limit=args.limit)
    if len(sources) != len(references):
        _err(f"error: {args.src} has {len(sources)} lines but {args.ref} has {len(references)}")
        return EXIT_ERROR
    if not sources:
        _err(f"error: {args.src} is empty")
        return EXIT_ERROR
    dst: Any = args.hyp_out if args.hyp_out else io.StringIO()
    report = client.translate_file(
        sources,
        dst,
        resume=args.resume,
        progress=args.progress,
        on_failure="empty",
        format="text",
        quality=args.quality,
        restart_hint="run without --resume",
    )
    hypotheses = read_output(dst)

    from .evaluation import score_corpus

    scores = score_corpus(hypotheses, references)
    if args.json:
        print(
            json.dumps(
                {
                    "sentences": len(sources),
                    "failed": len(report.failed_lines),
                    "bleu": scores.bleu.as_dict(),
                    "chrf": scores.chrf.as_dict(),
                    "server_signature": report.signature,
                    "model": report.model,
                    "usage": report.usage.to_dict(),
                    "hypotheses": args.hyp_out,
                },
                indent=2,
            )
        )
    else:
        print(scores.bleu.text)
        print(scores.chrf.text)
        print(f"sentences: {len(sources)}  failed: {len(report.failed_lines)}  server: {report.signature}")
    if report.failed_lines:
        _err(f"warning: {len(report.failed_lines)} sentences failed and were scored as empty hypotheses")
    return EXIT_OK


def _cmd_health(client: Client, args: argparse.Namespace) -> int:
    health = client.health()
    if health:
        print(f"{client.base_url}: live, ready")
        return EXIT_OK
    state = "live, not ready" if health.live else "not live"
    detail = f" ({health.status}: {health.message})" if health.message else f" ({health.status})"
    print(f"{client.base_url}: {state}{detail}")
    return EXIT_ERROR


def _cmd_info(client: Client, args: argparse.Namespace) -> int:
    info = client.info()
    print(json.dumps(dict(info.raw), indent=2, ensure_ascii=False))
    return EXIT_OK


# -- entry point ---------------------------------------------------------------------------------


def _describe(err: BaseException, client: Client | None) -> str:
    url = client.base_url if client is not None else "the server"
    if isinstance(err, TranslationFailed):
        return f"error: {err.message}"
    if isinstance(err, AuthenticationError):
        return f"error: {err} (set --api-key or BATCHMT_API_KEY)"
    if isinstance(err, APIError):
        param = f" [{err.param}]" if err.param else ""
        return f"error: the server answered {err}{param}"
    if isinstance(err, APIConnectionError):
        return f"error: {err} (is the server running at {url}? see --base-url / BATCHMT_BASE_URL)"
    return f"error: {err}"


def main(argv: Sequence[str] | None = None, *, client_factory: ClientFactory | None = None) -> int:
    """Run the CLI; returns the exit code. ``client_factory(**options)`` builds the client
    (default: :class:`~batchmt.Client`)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    factory: ClientFactory = client_factory or Client
    client: Client | None = None
    try:
        client = factory(**_client_options(args))
        with client:
            return int(args.handler(client, args))
    except BatchmtError as err:
        _err(_describe(err, client))
        return EXIT_ERROR
    except ValueError as err:  # e.g. a malformed --base-url
        _err(f"error: {err}")
        return EXIT_ERROR
    except OSError as err:
        if isinstance(err, BrokenPipeError):  # e.g. `batchmt translate ... | head`
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
            except (OSError, ValueError, io.UnsupportedOperation):
                pass
            return EXIT_ERROR
        name = f" {err.filename}" if err.filename else ""
        _err(f"error:{name}: {err.strerror or err}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _err("interrupted (a translation to a file resumes where it stopped when run again)")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
