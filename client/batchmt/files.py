"""Line-by-line file translation with resume, shared by ``Client.translate_file`` and
``AsyncClient.translate_file``.

Rules (one input line ↔ one output line, always newline-terminated):

* blank (empty or whitespace-only) lines are not sent; an empty line is written in their place;
* a translation that contains line breaks is joined with spaces, so lines stay aligned;
* **resume**: when ``dst`` exists and ``resume=True``, its ``k`` complete (newline-terminated)
  lines are kept, a trailing partial line is truncated, the first ``k`` source lines are skipped
  and new lines are appended. Output is flushed after every request, so an interrupted run
  (Ctrl-C, network error, ``on_failure="raise"``) can simply be started again;
* **failed sentences** (``status == "failed"``): with ``on_failure="empty"`` (the default) an
  empty line is written and the 1-based line number is listed in ``FileReport.failed_lines``; with
  ``on_failure="raise"`` the lines before the first failed one are written and flushed, then
  :class:`~batchmt.errors.TranslationFailed` is raised (its ``line_numbers`` say which lines), so a
  later resume starts at the failed line.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass, field
from typing import IO, Any, Iterable, Iterator, Literal, Union

from tqdm.auto import tqdm

from .errors import BatchmtError, TranslationFailed
from .types import TranslationResult, Usage

__all__ = [
    "FileJob",
    "FileReport",
    "LineBatch",
    "OnFailure",
    "Source",
    "Destination",
    "complete_lines",
    "read_lines",
    "read_output",
]

OnFailure = Literal["empty", "raise"]
PathLike = Union[str, "os.PathLike[str]"]
Source = Union[PathLike, IO[str], Iterable[str]]
"""A path, an open text stream, or an iterable of lines (e.g. a list of sentences)."""
Destination = Union[PathLike, IO[str]]
"""A path (resumable) or an open text stream (written from the start)."""

_BLOCK = 1 << 20


def _is_path(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike))


def _strip_newline(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def _one_line(text: str) -> str:
    """A translation as a single output line."""
    return " ".join(text.splitlines())


def complete_lines(path: PathLike) -> tuple[int, int]:
    """``(k, end)``: the number of newline-terminated lines in a file and the byte offset just
    after the last newline (0 if none)."""
    count = 0
    end = 0
    pos = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(_BLOCK)
            if not block:
                break
            n = block.count(b"\n")
            if n:
                count += n
                end = pos + block.rindex(b"\n") + 1
            pos += len(block)
    return count, end


@dataclass
class LineBatch:
    """Consecutive input lines translated with one ``translate()`` call."""

    first_line: int
    """1-based line number of ``lines[0]``."""
    lines: list[str]
    """The raw lines, without line terminators."""

    @property
    def sentences(self) -> list[str]:
        """The non-blank lines, which are sent to the server."""
        return [line for line in self.lines if line.strip()]


@dataclass
class FileReport:
    """What ``translate_file`` did."""

    src: str
    dst: str
    total_lines: int = 0
    """Lines in the output when the job ended (resumed + written)."""
    resumed_lines: int = 0
    """Complete lines that were already in ``dst`` and were kept."""
    translated_lines: int = 0
    blank_lines: int = 0
    failed_lines: list[int] = field(default_factory=list)
    """1-based line numbers written as empty lines because the server failed to translate them."""
    usage: Usage = field(default_factory=Usage)
    signature: str | None = None
    model: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed_lines


class FileJob:
    """Reads ``src`` in batches, writes translations to ``dst``; see the module docstring.

    Use as a context manager; the client drives it::

        with FileJob(src, dst) as job:
            for batch in job.batches(size):
                job.write(batch, client.translate(batch.sentences))
        report = job.report
    """

    def __init__(
        self,
        src: Source,
        dst: Destination,
        *,
        resume: bool = True,
        progress: bool | None = True,
        on_failure: OnFailure = "empty",
        encoding: str = "utf-8",
        desc: str | None = "translating",
    ) -> None:
        if on_failure not in ("empty", "raise"):
            raise ValueError(f"on_failure must be 'empty' or 'raise', not {on_failure!r}")
        self.src = src
        self.dst = dst
        self.resume = resume
        self.progress = progress
        self.on_failure = on_failure
        self.encoding = encoding
        self.desc = desc
        self.report = FileReport(src=self._name(src, "<lines>"), dst=self._name(dst, "<stream>"))
        self._in: Iterator[str] | None = None
        self._out: IO[str] | None = None
        self._opened: list[IO[Any]] = []
        self._bar: Any = None
        self._skip = 0

    @staticmethod
    def _name(obj: Any, default: str) -> str:
        if _is_path(obj):
            return str(os.fspath(obj))
        return str(getattr(obj, "name", None) or default)

    # -- setup / teardown ----------------------------------------------------------------------
    def __enter__(self) -> FileJob:
        try:
            self._open()
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _open(self) -> None:
        total = self._count_source()
        skip = 0
        if _is_path(self.dst):
            dst = os.fspath(self.dst)  # type: ignore[arg-type]
            if self.resume and os.path.exists(dst):
                skip, end = complete_lines(dst)
                if total is not None and skip > total:
                    raise BatchmtError(
                        f"cannot resume: {dst} already has {skip} lines but the input has only {total}; "
                        "is it the output of another input? Remove it or pass resume=False."
                    )
                with open(dst, "r+b") as f:
                    f.truncate(end)  # drop a trailing partial line
                out = open(dst, "a", encoding=self.encoding, newline="\n")
            else:
                out = open(dst, "w", encoding=self.encoding, newline="\n")
            self._opened.append(out)
            self._out = out
        else:
            self._out = self.dst  # type: ignore[assignment]
        self._skip = skip
        self.report.resumed_lines = skip
        self.report.total_lines = skip
        self._in = self._source_lines()
        self._bar = tqdm(
            total=total,
            initial=skip,
            unit="line",
            desc=self.desc,
            file=sys.stderr,
            disable=None if self.progress is None else not self.progress,  # None: only on a TTY
            dynamic_ncols=True,
            leave=True,
        )

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        for f in self._opened:
            f.close()
        self._opened.clear()

    def _read_encoding(self) -> str:
        # A UTF-8 byte-order mark must not end up in the first sentence.
        return "utf-8-sig" if self.encoding.lower().replace("_", "-") in ("utf-8", "utf8") else self.encoding

    def _count_source(self) -> int | None:
        if _is_path(self.src):
            with open(self.src, encoding=self._read_encoding()) as f:  # type: ignore[arg-type]
                return sum(1 for _ in f)
        if isinstance(self.src, (list, tuple)):
            return len(self.src)
        return None  # a stream: unknown

    def _source_lines(self) -> Iterator[str]:
        if _is_path(self.src):
            f = open(self.src, encoding=self._read_encoding())  # type: ignore[arg-type]
            self._opened.append(f)
            lines: Iterable[str] = f
        else:
            lines = self.src  # type: ignore[assignment]
        it = iter(lines)
        for n in range(self._skip):
            try:
                next(it)
            except StopIteration:
                raise BatchmtError(
                    f"cannot resume: {self.report.dst} already has {self._skip} lines but the input has only {n}; "
                    "is it the output of another input? Remove it or pass resume=False."
                ) from None
        for line in it:
            yield _strip_newline(line)

    # -- the loop ------------------------------------------------------------------------------
    def batches(self, size: int) -> Iterator[LineBatch]:
        """Batches holding up to ``size`` non-blank lines each (blank lines ride along)."""
        if self._in is None:
            raise RuntimeError("FileJob must be entered (with ...) before use")
        if size < 1:
            raise ValueError("size must be >= 1")
        line_no = self._skip + 1
        lines: list[str] = []
        n_sent = 0
        for line in self._in:
            is_blank = not line.strip()
            if not is_blank and n_sent == size:
                yield LineBatch(line_no, lines)
                line_no += len(lines)
                lines, n_sent = [], 0
            lines.append(line)
            n_sent += 0 if is_blank else 1
        if lines:
            yield LineBatch(line_no, lines)

    def write(self, batch: LineBatch, result: TranslationResult) -> None:
        """Write one batch's output lines (see the module docstring for failed sentences)."""
        assert self._out is not None
        if len(result) != len(batch.sentences):
            raise BatchmtError(f"got {len(result)} translations for {len(batch.sentences)} lines")
        if result.signature and self.report.signature is None:
            self.report.signature = result.signature
            self.report.model = result.model
        self.report.usage = self.report.usage + result.usage

        out_lines: list[str] = []
        failed: list[int] = []
        slot = iter(result.translations)
        for offset, line in enumerate(batch.lines):
            line_no = batch.first_line + offset
            if not line.strip():
                out_lines.append("")
                continue
            tr = next(slot)
            if tr.ok:
                out_lines.append(_one_line(tr.text or ""))
            else:
                failed.append(line_no)
                out_lines.append("")

        if failed and self.on_failure == "raise":
            keep = failed[0] - batch.first_line
            self._emit(batch, out_lines[:keep], n_failed=0)
            failures = [(i, t) for i, t in result.failures]
            first = failures[0][1]
            why = f"{first.error.code}: {first.error.message}" if first.error else first.status
            raise TranslationFailed(
                f"{len(failed)} line(s) could not be translated, first line {failed[0]} ({why}); "
                f"{self.report.total_lines} lines of {self.report.dst} are complete and a rerun resumes there",
                failures=failures,
                result=result,
                line_numbers=failed,
            )
        self.report.failed_lines.extend(failed)
        self._emit(batch, out_lines, n_failed=len(failed))

    def _emit(self, batch: LineBatch, out_lines: list[str], *, n_failed: int) -> None:
        assert self._out is not None
        if out_lines:
            self._out.write("".join(line + "\n" for line in out_lines))
        self._out.flush()
        blanks = sum(1 for line in batch.lines[: len(out_lines)] if not line.strip())
        self.report.blank_lines += blanks
        self.report.translated_lines += len(out_lines) - blanks - n_failed
        self.report.total_lines += len(out_lines)
        if self._bar is not None:
            self._bar.update(len(out_lines))


def read_lines(path: PathLike, *, limit: int | None = None, encoding: str = "utf-8-sig") -> list[str]:
    """The first ``limit`` lines of a text file, without line terminators."""
    lines: list[str] = []
    with open(path, encoding=encoding) as f:
        for line in f:
            if limit is not None and len(lines) >= limit:
                break
            lines.append(_strip_newline(line))
    return lines


def read_output(dst: Destination) -> list[str]:
    """The lines written to ``dst`` (a path or an ``io.StringIO``)."""
    if isinstance(dst, io.StringIO):
        return dst.getvalue().split("\n")[:-1]
    return read_lines(dst, encoding="utf-8")  # type: ignore[arg-type]
