"""File translation with resume, shared by ``Client.translate_file`` and ``AsyncClient.translate_file``.

The input is read in one of the formats of :mod:`batchmt.formats` (text by line or by paragraph,
JSONL, CSV/TSV, SRT, PO, XLIFF, HTML; from the extension unless ``format=`` says otherwise) and
split into *units*; the units are translated in batches and the output is written in the same
format, every unit in its place.

* **nothing stops a file**: a unit the server could not translate (``status`` ``failed`` or
  ``partial``, or a text over the server's ``max_text_chars``, which is not sent) is listed in
  ``FileReport.failures`` and written per ``on_failure``: ``"empty"`` (default: left
  untranslated, e.g. an empty line, an empty msgstr, no XLIFF target), ``"source"`` (the source
  text, or a partial translation with its failed sentences in the source language), or
  ``"raise"`` (stop with :class:`~batchmt.errors.TranslationFailed`; what was translated is kept
  for a rerun);
* **resume**: while a job runs to a path ``dst``, every batch's results are appended to
  ``<dst>.batchmt-resume``, whose first line fingerprints the input (SHA-256) and the settings
  (format, field/column, languages, quality, segmentation, tag handling). A rerun with
  ``resume=True`` sends only the units that are not translated yet, and **refuses** when the
  input, the settings or the server's translation signature differ from the first run's. The
  output is written when all units are done (atomically) and the resume file is then removed;
  until then ``dst`` is not touched;
* a stream ``dst`` (e.g. stdout) gets line formats (text, JSONL, CSV) batch by batch and the
  other formats at the end; it cannot be resumed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Literal

from tqdm.auto import tqdm

from .errors import BatchmtError, TranslationFailed
from .formats import Document, detect_format, parse_document
from .types import Translation, TranslationResult, Usage

__all__ = [
    "Batch",
    "FileJob",
    "FileReport",
    "OnFailure",
    "RESUME_SUFFIX",
    "Source",
    "Destination",
    "UnitFailure",
    "read_lines",
    "read_output",
]

OnFailure = Literal["empty", "source", "raise"]
ON_FAILURE = ("empty", "source", "raise")
PathLike = str | os.PathLike[str]
Source = PathLike | IO[str] | Iterable[str]
"""A path, an open text stream, or an iterable of lines (e.g. a list of sentences)."""
Destination = PathLike | IO[str]
"""A path (resumable) or an open text stream (written from the start)."""

RESUME_SUFFIX = ".batchmt-resume"
RESUME_VERSION = 1


def _is_path(obj: Any) -> bool:
    return isinstance(obj, (str, os.PathLike))


def _strip_newline(line: str) -> str:
    if line.endswith("\r\n"):
        return line[:-2]
    if line.endswith(("\n", "\r")):
        return line[:-1]
    return line


def _translation_json(t: Translation) -> dict[str, Any]:
    return {
        "text": t.text,
        "status": t.status,
        "error": {"code": t.error.code, "message": t.error.message} if t.error else None,
        "segments": t.segments,
        "failed_segments": [{"index": f.index, "code": f.code, "message": f.message} for f in t.failed_segments],
    }


@dataclass(frozen=True)
class UnitFailure:
    """A unit of the file that was not (fully) translated."""

    index: int
    """0-based index among the file's units."""
    where: str
    """``"line 7"``, ``"row 3"``, ``"subtitle 12"``, ``"trans-unit 'intro'"`` ..."""
    line: int | None
    status: str
    """``"failed"`` or ``"partial"``."""
    code: str
    message: str


@dataclass
class Batch:
    """Units translated with one ``translate()`` call."""

    indices: list[int]
    texts: list[str]
    tag_handling: str | None = None

    @property
    def sentences(self) -> list[str]:  # the name before texts
        return self.texts


@dataclass
class FileReport:
    """What ``translate_file`` did."""

    src: str
    dst: str
    format: str = "text"
    noun: str = "line"
    """What a unit of this format is: line, paragraph, record, row, subtitle, message, unit, document."""
    units: int = 0
    translated: int = 0
    """Units translated in full by this run."""
    resumed: int = 0
    """Units translated by an earlier, interrupted run (taken from the resume file)."""
    skipped: int = 0
    """Units with nothing to translate (blank lines, empty cells), written as they were."""
    failures: list[UnitFailure] = field(default_factory=list)
    suspect: list[UnitFailure] = field(default_factory=list)
    """Units delivered, but still a copy of the source or a loop after a second try (written; worth a look)."""
    usage: Usage = field(default_factory=Usage)
    signature: str | None = None
    model: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failures

    # The names from when every file was text by line.
    @property
    def total_lines(self) -> int:
        return self.units

    @property
    def resumed_lines(self) -> int:
        return self.resumed

    @property
    def translated_lines(self) -> int:
        return self.translated

    @property
    def blank_lines(self) -> int:
        return self.skipped

    @property
    def failed_lines(self) -> list[int]:
        """1-based input lines of the failures (for formats that know them)."""
        return [f.line for f in self.failures if f.line is not None]


class FileJob:
    """Reads ``src``, hands out batches, records their results, writes ``dst``; see the module
    docstring. The client drives it::

        with FileJob(src, dst, ...) as job:
            for batch in job.batches(max_texts, max_chars):
                job.record(batch, client.translate(batch.texts, **job.request_options(batch)))
            job.finish()
        report = job.report
    """

    def __init__(
        self,
        src: Source,
        dst: Destination,
        *,
        resume: bool = True,
        progress: bool | None = None,
        on_failure: OnFailure = "empty",
        encoding: str = "utf-8",
        desc: str | None = "translating",
        format: str | None = None,
        unit: str = "line",
        field: str = "text",
        column: str = "text",
        source_lang: str = "en",
        target_lang: str = "de",
        options: Mapping[str, Any] | None = None,
        restart_hint: str = "pass resume=False",
        review: bool = True,
    ) -> None:
        if on_failure not in ON_FAILURE:
            raise ValueError(f"on_failure must be one of {', '.join(map(repr, ON_FAILURE))}, not {on_failure!r}")
        self.src = src
        self.dst = dst
        self.resume = resume
        self.progress = progress
        self.on_failure = on_failure
        self.encoding = encoding
        self.desc = desc
        self.format = format
        self.unit = unit
        self.field = field
        self.column = column
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.options = {k: v for k, v in (options or {}).items() if v is not None}
        self.restart_hint = restart_hint
        #: mark machine translation for review where the format can (PO fuzzy, XLIFF states): formats.py
        self.review = review
        self.report = FileReport(src=self._name(src, "<lines>"), dst=self._name(dst, "<stream>"))
        self.doc: Document | None = None
        self.results: dict[int, Translation] = {}
        self._journal: IO[str] | None = None
        self._journal_path: str | None = None
        self._signature: str | None = None  # the server signature of the resumed translations
        self._emitted = 0
        self._prologue_done = False
        self._bar: Any = None

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

    def _read_source(self) -> bytes | str:
        if _is_path(self.src):
            with open(self.src, "rb") as f:  # type: ignore[arg-type]
                return f.read()
        read = getattr(self.src, "read", None)
        if callable(read):
            data = read()
            if not isinstance(data, (str, bytes)):
                raise TypeError("src.read() must return str or bytes")
            return data
        if isinstance(self.src, (str, bytes)):
            raise TypeError("src is a path, a text stream or an iterable of lines")
        return "".join(_strip_newline(line) + "\n" for line in self.src)  # type: ignore[union-attr]

    def _settings(self, fmt: str) -> dict[str, Any]:
        settings: dict[str, Any] = {"format": fmt, "source_lang": self.source_lang, "target_lang": self.target_lang}
        if fmt == "text":
            settings["unit"] = self.unit
        if fmt == "jsonl":
            settings["field"] = self.field
        if fmt in ("csv", "tsv"):
            settings["column"] = self.column
        settings.update(sorted(self.options.items()))
        return settings

    def _open(self) -> None:
        data = self._read_source()
        fmt = self.format or detect_format(self.report.src if _is_path(self.src) else getattr(self.src, "name", None))
        self.doc = doc = parse_document(
            data,
            fmt,
            unit=self.unit,
            field=self.field,
            column=self.column,
            target_lang=self.target_lang,
            encoding=self.encoding,
            review=self.review,
        )
        raw = data if isinstance(data, bytes) else data.encode("utf-8")
        header = {
            "batchmt_resume": RESUME_VERSION,
            "input": self.report.src,
            "input_bytes": len(raw),
            "input_sha256": hashlib.sha256(raw).hexdigest(),
            "settings": self._settings(fmt),
            "units": len(doc.units),
        }
        self.report.format = fmt
        self.report.noun = doc.noun
        self.report.units = len(doc.units)
        self.report.skipped = sum(1 for u in doc.units if not u.send)
        if _is_path(self.dst):
            self._journal_path = str(os.fspath(self.dst)) + RESUME_SUFFIX  # type: ignore[arg-type]
            if self.resume and os.path.exists(self._journal_path):
                self._load_journal(header)
                self._journal = open(self._journal_path, "a", encoding="utf-8")
            else:
                self._journal = open(self._journal_path, "w", encoding="utf-8")
                self._journal.write(json.dumps(header, ensure_ascii=False) + "\n")
                self._journal.flush()
        self.report.resumed = len(self.results)
        self._bar = tqdm(
            total=len(doc.units),
            initial=self.report.skipped + self.report.resumed,
            unit=doc.noun,
            desc=self.desc,
            file=sys.stderr,
            disable=None if self.progress is None else not self.progress,  # None: only on a TTY
            dynamic_ncols=True,
            leave=True,
        )

    def _refuse(self, why: str) -> BatchmtError:
        return BatchmtError(
            f"cannot resume {self.report.dst}: {why}; its partial translation is in {self._journal_path}. "
            f"Use the same input and settings, or {self.restart_hint} to start over."
        )

    def _load_journal(self, header: Mapping[str, Any]) -> None:
        assert self._journal_path is not None
        with open(self._journal_path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        try:
            old = json.loads(lines[0])
            if not isinstance(old, dict) or old.get("batchmt_resume") != RESUME_VERSION:
                raise ValueError
        except ValueError:
            raise self._refuse("the resume file is not one this batchmt version wrote") from None
        if old.get("input_sha256") != header["input_sha256"]:
            raise self._refuse(
                f"it was started from another input ({old.get('input')}, {old.get('input_bytes')} bytes) than "
                f"{header['input']} ({header['input_bytes']} bytes): the SHA-256 fingerprints differ"
            )
        if old.get("settings") != header["settings"]:
            before, now = old.get("settings") or {}, header["settings"]
            changed = [
                f"{k}: {before.get(k)!r} -> {now.get(k)!r}"
                for k in sorted(set(before) | set(now))
                if before.get(k) != now.get(k)
            ]
            raise self._refuse(f"it was started with other settings ({'; '.join(changed)})")
        for line in lines[1:]:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                results = [(int(i), Translation.from_json(t)) for i, t in record["results"]]
            except (ValueError, KeyError, TypeError, BatchmtError):
                continue  # a line cut short by an interruption
            if record.get("signature"):
                self._signature = record["signature"]
            for i, t in results:
                if t.delivered and 0 <= i < self.report.units:
                    self.results[i] = t  # units that failed before are sent again
        if self._signature and self.report.signature is None:
            self.report.signature = self._signature

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    # -- the loop ------------------------------------------------------------------------------
    def batches(self, max_texts: int, max_chars: int | None = None) -> Iterator[Batch]:
        """The units still to translate, in order, in batches of at most ``max_texts`` texts and
        ``max_chars`` characters (a longer unit goes alone) with one ``tag_handling`` each."""
        if self.doc is None:
            raise RuntimeError("FileJob must be entered (with ...) before use")
        if max_texts < 1:
            raise ValueError("max_texts must be >= 1")
        batch: Batch | None = None
        chars = 0
        for i, unit in enumerate(self.doc.units):
            if not unit.send or i in self.results:
                continue
            tags = unit.tag_handling or self.options.get("tag_handling")
            if batch is not None and (
                len(batch.indices) >= max_texts
                or batch.tag_handling != tags
                or (max_chars is not None and chars + len(unit.text) > max_chars)
            ):
                yield batch
                batch = None
            if batch is None:
                batch, chars = Batch([], [], tags), 0
            batch.indices.append(i)
            batch.texts.append(unit.text)
            chars += len(unit.text)
        if batch is not None:
            yield batch

    def request_options(self, batch: Batch) -> dict[str, Any]:
        """Keyword arguments of ``translate()`` for ``batch``."""
        options = dict(self.options)
        if batch.tag_handling is not None:
            options["tag_handling"] = batch.tag_handling
        return {"source_lang": self.source_lang, "target_lang": self.target_lang, **options}

    def record(self, batch: Batch, result: TranslationResult) -> None:
        """Keep one batch's results (in the resume file too), then report or raise its failures."""
        assert self.doc is not None
        if len(result) != len(batch.indices):
            raise BatchmtError(f"got {len(result)} translations for {len(batch.indices)} texts")
        if self.report.resumed and self._signature and result.signature and result.signature != self._signature:
            raise self._refuse(
                f"the server's translation signature changed since the first run (was {self._signature}, now "
                f"{result.signature}); the {self.report.resumed} {self.report.noun}s translated before would be mixed "
                "with ones made otherwise"
            )
        if result.signature:
            self._signature = self._signature or result.signature
            self.report.signature = self._signature
            self.report.model = self.report.model or result.model
        self.report.usage = self.report.usage + result.usage
        if self._journal is not None:
            pairs = [[i, _translation_json(t)] for i, t in zip(batch.indices, result.translations)]
            self._journal.write(json.dumps({"signature": result.signature, "results": pairs}, ensure_ascii=False))
            self._journal.write("\n")
            self._journal.flush()
        failures: list[tuple[int, Translation]] = []
        for i, t in zip(batch.indices, result.translations):
            self.results[i] = t
            if t.delivered:
                self.report.translated += 1
                if t.suspect:
                    self.report.suspect.append(self._failure(i, t))
            else:
                failures.append((i, t))
        if failures and self.on_failure == "raise":
            first_index = failures[0][0]
            self._stream(upto=first_index)
            self.report.failures.extend(self._failure(i, t) for i, t in failures)
            raise self._failed(failures)
        self.report.failures.extend(self._failure(i, t) for i, t in failures)
        if self._bar is not None:
            self._bar.update(len(batch.indices))
        self._stream(upto=len(self.doc.units))

    def _failure(self, i: int, t: Translation) -> UnitFailure:
        assert self.doc is not None
        unit = self.doc.units[i]
        if t.error is not None:
            code, message = t.error.code, t.error.message
        elif t.failed_segments:
            first = t.failed_segments[0]
            code, message = first.code, f"segment {first.index}: {first.message}"
        elif t.suspect_segments:
            sus = t.suspect_segments[0]
            code, message = f"suspect_{sus.reason}", f"segment {sus.index}: still a {sus.reason} after a second try"
        elif t.warnings:
            code, message = t.warnings[0].code, t.warnings[0].message
        else:
            code, message = t.status, ""
        return UnitFailure(index=i, where=unit.where, line=unit.line, status=t.status, code=code, message=message)

    def _failed(self, failures: list[tuple[int, Translation]]) -> TranslationFailed:
        first = self._failure(*failures[0])
        noun = self.report.noun
        if self._journal_path is not None:
            kept = (
                f"the {len([t for t in self.results.values() if t.delivered])} {noun}s translated so far are saved in "
                f"{self._journal_path} and a rerun resumes there"
            )
        else:
            kept = f"the output stops before {first.where}"
        return TranslationFailed(
            f"{len(failures)} {noun}(s) could not be translated, first {first.where} "
            f"({first.code}: {first.message}); {kept}",
            failures=failures,
            line_numbers=[u.line for u in (self._failure(i, t) for i, t in failures) if u.line is not None],
        )

    # -- output --------------------------------------------------------------------------------
    def _output(self, i: int) -> tuple[str | None, bool]:
        """Unit ``i``'s output text (``None``: left untranslated) and whether it is a translation."""
        assert self.doc is not None
        unit = self.doc.units[i]
        t = self.results.get(i)
        if not unit.send or t is None:
            return None, False
        if t.delivered:
            return t.text, True
        if self.on_failure == "source" or self.doc.keeps_source:
            return (t.text if t.partial else unit.text), False
        return None, False

    def _stream(self, upto: int) -> None:
        """Write the done units before ``upto`` to a stream ``dst`` (line formats only)."""
        assert self.doc is not None
        if _is_path(self.dst) or not self.doc.streamable:
            return
        out: IO[str] = self.dst  # type: ignore[assignment]
        if not self._prologue_done:
            out.write(self.doc.prologue())
            self._prologue_done = True
        units = self.doc.units
        pieces = []
        while self._emitted < upto and (not units[self._emitted].send or self._emitted in self.results):
            pieces.append(self.doc.piece(self._emitted, self._output(self._emitted)[0]))
            self._emitted += 1
        out.write("".join(pieces))
        out.flush()

    def finish(self) -> FileReport:
        """Write the output (every unit done) and remove the resume file."""
        assert self.doc is not None
        missing = [i for i, u in enumerate(self.doc.units) if u.send and i not in self.results]
        if missing:
            raise RuntimeError(f"finish() with {len(missing)} units not translated")
        if _is_path(self.dst):
            outputs = [self._output(i) for i in range(len(self.doc.units))]
            text = self.doc.render([o for o, _ in outputs], [done for _, done in outputs])
            dst = os.fspath(self.dst)  # type: ignore[arg-type]
            tmp = f"{dst}.batchmt-tmp"
            if isinstance(text, bytes):  # .docx, .pptx
                with open(tmp, "wb") as fb:
                    fb.write(text)
            else:
                with open(tmp, "w", encoding=self.encoding, newline="\n") as f:
                    f.write(text)
            os.replace(tmp, dst)
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            if self._journal_path is not None and os.path.exists(self._journal_path):
                os.remove(self._journal_path)
        elif self.doc.streamable:
            self._stream(upto=len(self.doc.units))
        else:
            outputs = [self._output(i) for i in range(len(self.doc.units))]
            rendered = self.doc.render([o for o, _ in outputs], [done for _, done in outputs])
            out: Any = self.dst
            if isinstance(rendered, bytes):  # a binary format to a stream: its bytes (sys.stdout: its buffer)
                out = getattr(out, "buffer", out)
            out.write(rendered)
            out.flush()
        return self.report


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
