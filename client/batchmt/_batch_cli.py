"""``batchmt batch submit | status | wait | download | cancel | list`` and ``batchmt translate --as-job``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .batches import Batch, BatchFailed, lines_progress

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["add_batch_commands", "translate_as_job"]

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL = 0, 1, 3


def _err(message: str) -> None:
    print(f"batchmt: {message}", file=sys.stderr)


def _summary(b: Batch) -> dict[str, Any]:
    rc = b.request_counts
    return {
        "id": b.id,
        "status": b.status,
        "request_counts": {"total": rc.total, "completed": rc.completed, "failed": rc.failed},
        **({"lines": {"total": lines[1], "translated": lines[0]}} if (lines := lines_progress(b)) else {}),
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": b.created_at,
        "expires_at": b.expires_at,
        "metadata": b.metadata,
        "usage": dict(b.usage),
    }


def _metadata(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ValueError(f"--metadata wants KEY=VALUE, not {p!r}")
        out[key] = value
    return out


def add_batch_commands(
    commands: Any,
    add_global_options: Callable[..., None],
    add_progress_options: Callable[[argparse.ArgumentParser], None],
) -> None:
    """Add ``batch`` and its subcommands to the CLI's subparsers."""
    batch = commands.add_parser(
        "batch",
        help="batch jobs on the server: submit a file, follow it, download the result",
        description="Batch jobs run on the server (OpenAI-Batch-compatible, /v1/batches) and survive its restarts: "
        "submit a file, then wait for it or come back later with its id.",
    )
    sub = batch.add_subparsers(dest="batch_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("submit", help="upload a file and start a batch; prints the batch id")
    p.add_argument("file", help="a text file (one sentence per line) or a JSONL of batch requests")
    p.add_argument(
        "--kind",
        choices=("auto", "text", "batch"),
        default="auto",
        help="text: one sentence per line; batch: JSONL of {custom_id, method, url, body} (default: auto)",
    )
    p.add_argument(
        "--sentences-per-request", type=int, default=32, metavar="N", help="text files: lines per request (default: 32)"
    )
    p.add_argument("--completion-window", default="24h", help="e.g. 24h (default), 30m, 7d")
    p.add_argument("--metadata", action="append", metavar="KEY=VALUE", help="attach metadata (repeatable)")
    p.add_argument("--quality", choices=("fast", "balanced", "best"))
    p.add_argument("--wait", action="store_true", help="then wait for it (with a progress bar)")
    add_progress_options(p)
    add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_submit)

    for name, help_, handler in (
        ("status", "print a batch as JSON", _cmd_status),
        ("wait", "wait until a batch is done (progress bar on stderr)", _cmd_wait),
        ("cancel", "cancel a batch (what is done stays downloadable)", _cmd_cancel),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("batch_id")
        if name == "wait":
            p.add_argument("--poll-interval", type=float, default=1.0, metavar="SECONDS")
            add_progress_options(p)
        add_global_options(p, suppress=True)
        p.set_defaults(handler=handler)

    p = sub.add_parser("download", help="write a finished batch's output")
    p.add_argument("batch_id")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="where to write it")
    p.add_argument(
        "--source",
        metavar="FILE",
        help="the text file submitted: write translated text, line by line (default: the server's output JSONL)",
    )
    p.add_argument("--errors", metavar="FILE", help="also write the error file (failed requests) here")
    p.add_argument(
        "--partial",
        action="store_true",
        help="a cancelled or expired batch: write what was done (without it, such a batch is an error)",
    )
    add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_download)

    p = sub.add_parser("list", help="list batches, newest first")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--after", metavar="BATCH_ID", help="the page after this batch")
    add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_list)


def _print(obj: Any) -> None:
    print(json.dumps(obj, ensure_ascii=False, indent=2))


def _cmd_submit(client: Client, args: argparse.Namespace) -> int:
    b = client.batches.create_from_file(
        args.file,
        kind=args.kind,
        sentences_per_request=args.sentences_per_request,
        completion_window=args.completion_window,
        metadata=_metadata(args.metadata),
        quality=args.quality,
    )
    print(b.id)
    _err(f"batch {b.id}: {b.request_counts.total} requests ({b.request_counts.failed} refused at validation)")
    if args.wait:
        b = client.batches.wait(b.id, progress=args.progress)
        _err(f"batch {b.id} {b.status}: {b.request_counts.completed} completed, {b.request_counts.failed} failed")
        return EXIT_OK if b.status == "completed" and not b.request_counts.failed else EXIT_PARTIAL
    return EXIT_OK


def _cmd_status(client: Client, args: argparse.Namespace) -> int:
    _print(_summary(client.batches.retrieve(args.batch_id)))
    return EXIT_OK


def _cmd_wait(client: Client, args: argparse.Namespace) -> int:
    b = client.batches.wait(args.batch_id, progress=args.progress, poll_interval=args.poll_interval)
    _print(_summary(b))
    return EXIT_OK if b.status == "completed" and not b.request_counts.failed else EXIT_PARTIAL


def _cmd_cancel(client: Client, args: argparse.Namespace) -> int:
    _print(_summary(client.batches.cancel(args.batch_id)))
    return EXIT_OK


def _cmd_download(client: Client, args: argparse.Namespace) -> int:
    missing = client.batches.download(
        args.batch_id, args.output, source=args.source, errors=args.errors, partial=args.partial
    )
    if missing:
        _err(
            f"warning: {len(missing)} lines could not be translated and are left empty: "
            + ", ".join(map(str, missing[:20]))
            + (" ..." if len(missing) > 20 else "")
        )
        return EXIT_PARTIAL
    return EXIT_OK


def _cmd_list(client: Client, args: argparse.Namespace) -> int:
    page = client.batches.list(limit=args.limit, after=args.after)
    for b in page:
        rc = b.request_counts
        print(f"{b.id}\t{b.status}\t{rc.completed}/{rc.total}\t{rc.failed} failed")
    if page.has_more:
        _err(f"more: --after {page.last_id}")
    return EXIT_OK


def translate_as_job(client: Client, args: argparse.Namespace) -> int:
    """``batchmt translate -i FILE -o OUT --as-job``: the file (any format ``batchmt translate`` reads) becomes a
    batch job on the server; wait for it with a progress bar, then write OUT in the same format. The job survives
    this command and server restarts."""
    from pathlib import Path

    from .batches import document_outputs, document_requests
    from .formats import detect_format, parse_document

    if args.input == "-" or args.output == "-":
        raise ValueError("--as-job needs -i FILE and -o FILE (the job reads a file and writes one)")
    fmt = args.format or detect_format(args.input)
    parse = dict(unit=args.unit, field=args.field, column=args.column, target_lang=args.target_lang)
    parse["review"] = getattr(args, "review", True)
    doc = parse_document(Path(args.input).read_bytes(), fmt, **parse)
    options = {
        k: v
        for k, v in (
            ("quality", args.quality),
            ("split_sentences", args.split_sentences),
            ("tag_handling", args.tag_handling),
            ("preserve_placeholders", args.preserve_placeholders),
            ("glossary_id", getattr(args, "glossary_id", None)),
            ("formality", getattr(args, "formality", None)),
            ("source_lang_check", getattr(args, "source_lang_check", None)),
        )
        if v is not None
    }
    data = document_requests(doc, source_lang=args.source_lang, target_lang=args.target_lang, options=options)
    if not data:
        raise ValueError(f"{args.input}: nothing to translate")
    f = client.batches.upload_bytes(data, Path(args.input).name + ".batch.jsonl")
    b = client.batches.create(f.id, metadata={"source": Path(args.input).name[:512]})
    _err(
        f"batch {b.id} submitted ({b.request_counts.total} requests); it runs on the server: if this command "
        f"stops, `batchmt batch wait {b.id}` shows it, and this same command with --as-job starts a new one"
    )
    b = client.batches.wait(b.id, progress=args.progress)
    if b.status != "completed":
        raise BatchFailed(f"batch {b.id} ended {b.status}")
    output = client.batches.content(b.output_file_id) if b.output_file_id else b""
    outputs, complete = document_outputs(doc, output)
    missing = [u.where for u, o, sent in zip(doc.units, outputs, (u.send for u in doc.units)) if sent and o is None]
    out_path = Path(args.output)
    tmp = out_path.with_name(out_path.name + ".part")
    rendered = doc.render(outputs, complete)
    if isinstance(rendered, bytes):
        tmp.write_bytes(rendered)
    else:
        tmp.write_text(rendered, encoding="utf-8")
    tmp.replace(out_path)
    _err(f"{b.request_counts.completed} requests translated to {args.output} ({fmt})")
    if missing or b.request_counts.failed:
        shown = ", ".join(missing[:20]) + (" ..." if len(missing) > 20 else "")
        _err(f"warning: {len(missing)} {doc.noun}s could not be translated: {shown}")
        return EXIT_PARTIAL
    return EXIT_OK
