"""``batchmt memory import | export | purge | info``: the server's translation memory of the API key."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .client import Client

__all__ = ["add_memory_commands"]

EXIT_OK = 0


def add_memory_commands(commands: Any, add_global_options: Callable[..., None]) -> None:
    """Add ``memory`` and its subcommands to the CLI's subparsers."""
    memory = commands.add_parser(
        "memory",
        help="the server's translation memory: import human translations (TMX, TSV), export it, purge it",
        description="Imported translations are served before the model, under every model and setting, and never "
        "evicted. The memory is the API key's own.",
    )
    sub = memory.add_subparsers(dest="memory_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("import", help="import a TMX (1.4b) or TSV (English<TAB>German) file")
    p.add_argument("file")
    p.add_argument("--format", choices=("tmx", "tsv"), help="default: by the file name (.tmx, .tsv)")
    add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_import)

    p = sub.add_parser("export", help="write the memory as TMX 1.4b")
    p.add_argument("file")
    p.add_argument("--origin", choices=("human", "model"), help="only imported (human) or the model's entries")
    p.add_argument("--key", metavar="KEY_ID", help="(an admin key) another key's memory")
    add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_export)

    p = sub.add_parser("purge", help="delete entries: all, or one sentence's (--source), or one origin's")
    p.add_argument("--source", metavar="TEXT", help="the English sentence whose entries go")
    p.add_argument("--origin", choices=("human", "model"))
    p.add_argument("--key", metavar="KEY_ID", help="(an admin key) another key's memory")
    add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_purge)

    p = sub.add_parser("info", help="how many entries the memory holds, and its limits (JSON)")
    add_global_options(p, suppress=True)
    p.set_defaults(handler=_cmd_info)


def _cmd_import(client: Client, args: argparse.Namespace) -> int:
    result = client.memory.import_file(args.file, format=args.format)
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(result.skipped.items())) or "none"
    print(f"imported {result.imported} entries from {args.file} ({result.new} new; skipped: {skipped})")
    return EXIT_OK


def _cmd_export(client: Client, args: argparse.Namespace) -> int:
    path = client.memory.export(args.file, origin=args.origin, key=args.key)
    print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


def _cmd_purge(client: Client, args: argparse.Namespace) -> int:
    n = client.memory.purge(source=args.source, origin=args.origin, key=args.key)
    print(f"deleted {n} entries")
    return EXIT_OK


def _cmd_info(client: Client, args: argparse.Namespace) -> int:
    print(json.dumps(asdict(client.memory.info()), indent=2))
    return EXIT_OK
