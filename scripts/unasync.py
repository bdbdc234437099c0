"""Generate the SDK's synchronous client from its asynchronous source, as httpcore does (scripts/unasync.py there).

    python scripts/unasync.py          # rewrite the generated files
    python scripts/unasync.py --check  # exit 1 if a generated file is stale (scripts/check runs this)

The async modules are the only hand-written copy. Each generated file is the async source with the substitutions
below (``async def`` -> ``def``, ``await x`` -> ``x``, ``AsyncClient`` -> ``Client``, ...), then lines marked for
one side only are applied, then ruff fixes the imports and formats it:

- a line ending in ``# async-only`` is left out of the sync file, and so is every line between
  ``# async-only: begin`` and ``# async-only: end``;
- a line ending in ``# sync: CODE`` becomes ``CODE`` (same indentation) in the sync file.

What the two sides do differently at run time (concurrent chunks, blocking file I/O off the loop) is one pair of
functions in ``client/batchmt/_concurrency.py``, ``async_x`` and ``x``.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "client" / "batchmt"
FILES = {
    "async_client.py": "client.py",
    "async_batches.py": "sync_batches.py",
    "async_memory.py": "sync_memory.py",
    "async_glossaries.py": "sync_glossaries.py",
}  # source -> generated

SUBS = [
    (r"\bAsyncClient\b", "Client"),
    (r"\bAsyncBatches\b", "Batches"),
    (r"\bAsyncMemory\b", "Memory"),
    (r"\bAsyncGlossaries\b", "Glossaries"),
    (r"\basync_glossaries\b", "sync_glossaries"),
    (r"\bAsyncBaseTransport\b", "BaseTransport"),
    (r"\basync_batches\b", "sync_batches"),
    (r"\basync_memory\b", "sync_memory"),
    (r"\.async_client\b", ".client"),
    (r"\basync_(gather_bounded|run_blocking)\b", r"\1"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\basyncio\.sleep\b", "time.sleep"),
    (r"^import asyncio$", "import time"),
    (r"\bAwaitable\[Any\]", "Any"),
    (r"\basync (def|with|for)\b", r"\1"),
    (r"\bawait ", ""),
]
ONLY_ASYNC = re.compile(r"\s*# async-only$")
SYNC_LINE = re.compile(r"^(\s*).*?\s*# sync: (.*)$")


def _lines_for_sync(text: str, source: str) -> str:
    out: list[str] = []
    skipping = False
    for line in text.split("\n"):
        stripped = line.strip()
        if stripped == "# async-only: begin":
            skipping = True
        elif stripped == "# async-only: end":
            if not skipping:
                raise SystemExit(f"{source}: '# async-only: end' without a begin")
            skipping = False
        elif skipping or ONLY_ASYNC.search(line):
            continue
        elif m := SYNC_LINE.match(line):
            out.append(m.group(1) + m.group(2))
        else:
            out.append(line)
    if skipping:
        raise SystemExit(f"{source}: '# async-only: begin' without an end")
    return "\n".join(out)


def _ruff(text: str, name: str) -> str:
    ruff = Path(sys.executable).with_name("ruff")
    cmd = str(ruff) if ruff.exists() else "ruff"
    fixed = subprocess.run(
        [cmd, "check", "--fix-only", "--select", "I,F401", "--stdin-filename", name, "-"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return subprocess.run(
        [cmd, "format", "--stdin-filename", name, "-"],
        input=fixed,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def generate(source: str) -> str:
    text = (PKG / source).read_text(encoding="utf-8")
    text = _lines_for_sync(text, source)
    for pattern, repl in SUBS:
        text = re.sub(pattern, repl, text, flags=re.MULTILINE)
    header = (
        f"# Generated from {source} by scripts/unasync.py: do not edit. Edit {source}, then run\n"
        "# `python scripts/unasync.py` (scripts/check fails while this file is stale).\n"
    )
    return _ruff(header + text, str(PKG / FILES[source]))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for source, target in FILES.items():
        want = generate(source)
        path = PKG / target
        have = path.read_text(encoding="utf-8") if path.exists() else ""
        if want == have:
            continue
        if check:
            stale.append(target)
            sys.stdout.writelines(
                difflib.unified_diff(have.splitlines(True), want.splitlines(True), f"{target} (now)", "generated")
            )
        else:
            path.write_text(want, encoding="utf-8")
            print(f"wrote client/batchmt/{target}")
    if stale:
        print(f"stale: {', '.join(stale)}: run `python scripts/unasync.py`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
