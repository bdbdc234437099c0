"""File formats of ``translate_file`` / ``batchmt translate``: each format reads a file into
*units* (the texts sent for translation, with where they are) and writes the file back with
every unit's output in its place, everything else (ids, timings, headers, markup, other
columns and fields) kept.

=========  ===================  ===================================================================
format     extensions           a unit is
=========  ===================  ===================================================================
text       anything else        a line (``unit="line"``) or a blank-line separated paragraph
jsonl      .jsonl .ndjson       the string in ``field`` of each JSON object (one per line)
csv, tsv   .csv / .tsv .tab     the cell in ``column`` (named in the header row) of each row
srt        .srt                 a subtitle's text (its lines joined; ``srt`` package)
po         .po .pot             an untranslated entry's msgid (and msgid_plural) (``polib``)
xliff      .xlf .xliff          a trans-unit's (1.2) / segment's (2.0) source (``lxml``)
html       .html .htm .xhtml    the whole document, sent with ``tag_handling="html"``
=========  ===================  ===================================================================

A unit's output is ``None`` when it is left untranslated (a failed unit with
``on_failure="empty"``): text, JSONL and CSV write an empty string, PO an empty msgstr, XLIFF no
target; SRT and HTML have no empty slot and keep the source text.

srt, polib and lxml are the optional extra ``formats`` (``pip install 'batchmt[formats]'``),
imported only when such a file is read.
"""

from __future__ import annotations

import copy
import csv
import importlib
import io
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import BatchmtError

__all__ = [
    "FORMATS",
    "Document",
    "FileFormatError",
    "Unit",
    "detect_format",
    "parse_document",
]

FORMATS = ("text", "jsonl", "csv", "tsv", "srt", "po", "xliff", "html")
UNITS = ("line", "paragraph")

_EXTENSIONS = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".srt": "srt",
    ".po": "po",
    ".pot": "po",
    ".xlf": "xliff",
    ".xliff": "xliff",
    ".xlf2": "xliff",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
}


class FileFormatError(BatchmtError):
    """The input file cannot be read in the format asked for (raised before any request)."""


def detect_format(name: str | None) -> str:
    """The format of a file from its extension (``text`` when unknown or when there is no name)."""
    if not name:
        return "text"
    return _EXTENSIONS.get(os.path.splitext(str(name))[1].lower(), "text")


def _require(module: str, package: str, fmt: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise FileFormatError(
            f"the {fmt} format needs the '{package}' package: pip install 'batchmt[formats]' (or pip install {package})"
        ) from exc


@dataclass
class Unit:
    """One text to translate and where it is in the file."""

    text: str
    where: str
    """For reports: ``"line 12"``, ``"row 4"``, ``"subtitle 7"``, ``"trans-unit 'intro'"``, ..."""
    line: int | None = None
    """1-based line of the input, when the format knows it."""
    send: bool = True
    """False: nothing to translate (a blank line, a missing field); the output keeps the input."""
    tag_handling: str | None = None
    """Sent as this unit's ``tag_handling`` (markup formats), overriding the caller's."""


class Document:
    """A parsed input file: ``units`` in order and ``render(outputs)`` for the output file."""

    name: ClassVar[str]
    noun: ClassVar[str] = "segment"
    streamable: ClassVar[bool] = False
    """Line formats: the output can be written unit by unit (``prologue`` + ``piece(i)``)."""
    keeps_source: ClassVar[bool] = False
    """No empty slot in this format: a failed unit keeps its source text (a partial one its
    partial translation) even with ``on_failure="empty"``."""

    units: list[Unit]

    def render(self, outputs: Sequence[str | None], translated: Sequence[bool] | None = None) -> str:
        """The output file; ``outputs[i]`` is unit ``i``'s text (``None``: left untranslated) and
        ``translated[i]`` whether it is a full translation (not the source kept in place)."""
        return self.prologue() + "".join(self.piece(i, out) for i, out in enumerate(outputs))

    def prologue(self) -> str:
        return ""

    def piece(self, i: int, output: str | None) -> str:
        raise NotImplementedError


def _one_line(text: str) -> str:
    return " ".join(text.splitlines())


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _lines(text: str) -> list[str]:
    lines = _normalize_newlines(text).split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


class TextLines(Document):
    name = "text"
    noun = "line"
    streamable = True

    def __init__(self, text: str) -> None:
        self.units = [
            Unit(line, f"line {n}", line=n, send=bool(line.strip())) for n, line in enumerate(_lines(text), 1)
        ]

    def piece(self, i: int, output: str | None) -> str:
        unit = self.units[i]
        if not unit.send:
            return "\n"  # blank lines are kept as empty lines
        return _one_line(output or "") + "\n"


_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n(?:[ \t]*\n)*")


class TextParagraphs(Document):
    """Blank-line separated blocks; each block is one text (its line breaks are kept by the
    server) and the blank lines between blocks are written back exactly."""

    name = "text"
    noun = "paragraph"
    streamable = True

    def __init__(self, text: str) -> None:
        text = _normalize_newlines(text)
        lead = re.match(r"(?:[ \t]*\n)*", text)
        self._lead = lead.group(0) if lead else ""
        body = text[len(self._lead) :]
        self.units = []
        self._seps: list[str] = []
        line = 1 + self._lead.count("\n")
        pos = 0
        for m in _PARAGRAPH_BREAK.finditer(body):
            self._add(body[pos : m.start()], m.group(0), line)
            line += body[pos : m.end()].count("\n")
            pos = m.end()
        if pos < len(body):
            tail = body[pos:]
            stripped = tail.rstrip("\n")
            self._add(stripped, tail[len(stripped) :], line)

    def _add(self, block: str, sep: str, line: int) -> None:
        self.units.append(Unit(block, f"paragraph at line {line}", line=line, send=bool(block.strip())))
        self._seps.append(sep)

    def prologue(self) -> str:
        return self._lead

    def piece(self, i: int, output: str | None) -> str:
        unit = self.units[i]
        out = unit.text if not unit.send else (output or "")
        return _normalize_newlines(out) + self._seps[i]


class JsonLines(Document):
    name = "jsonl"
    noun = "record"
    streamable = True

    def __init__(self, text: str, field: str) -> None:
        self.field = field
        self.units = []
        self._objects: list[dict[str, Any] | None] = []
        self._raw: list[str] = []
        for n, line in enumerate(_lines(text), 1):
            self._raw.append(line)
            if not line.strip():
                self._objects.append(None)
                self.units.append(Unit("", f"line {n}", line=n, send=False))
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise FileFormatError(f"line {n} is not valid JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise FileFormatError(f"line {n} is not a JSON object")
            value = obj.get(field)
            text = value if isinstance(value, str) else ""
            self._objects.append(obj)
            self.units.append(Unit(text, f"line {n}", line=n, send=bool(text.strip())))
        if (
            self.units
            and not any(u.send for u in self.units)
            and not any(o is not None and field in o for o in self._objects)
        ):
            raise FileFormatError(f"no record has the field {field!r} (choose it with --field / field=)")

    def piece(self, i: int, output: str | None) -> str:
        obj = self._objects[i]
        if obj is None or not self.units[i].send:
            return self._raw[i] + "\n"
        out = dict(obj)
        out[self.field] = output if output is not None else ""
        return json.dumps(out, ensure_ascii=False) + "\n"


class Table(Document):
    noun = "row"
    streamable = True

    def __init__(self, text: str, column: str, delimiter: str, name: str) -> None:
        self.name = name  # type: ignore[misc]
        self.delimiter = delimiter
        rows = list(csv.reader(io.StringIO(_normalize_newlines(text), newline=""), delimiter=delimiter))
        if not rows:
            raise FileFormatError("the table is empty (a header row naming the columns is expected)")
        self.header = rows[0]
        if column not in self.header:
            raise FileFormatError(
                f"no column {column!r} in the header row (columns: {', '.join(map(repr, self.header))}); "
                "choose one with --column / column="
            )
        self.col = self.header.index(column)
        self.rows = rows[1:]
        self.units = []
        for n, row in enumerate(self.rows, 2):
            cell = row[self.col] if self.col < len(row) else ""
            self.units.append(Unit(cell, f"row {n}", send=bool(cell.strip())))

    def _row(self, row: Sequence[str]) -> str:
        buf = io.StringIO()
        csv.writer(buf, delimiter=self.delimiter, lineterminator="\n").writerow(row)
        return buf.getvalue()

    def prologue(self) -> str:
        return self._row(self.header)

    def piece(self, i: int, output: str | None) -> str:
        row = list(self.rows[i])
        if self.units[i].send:
            row[self.col] = output if output is not None else ""
        return self._row(row)


def _balance(text: str, lines: int) -> str:
    """A subtitle's translation on as many lines as its source had (at most 2), broken at the
    space nearest the middle."""
    if lines < 2 or len(text) <= 42 or " " not in text:
        return text
    middle = len(text) // 2
    spaces = [m.start() for m in re.finditer(" ", text)]
    cut = min(spaces, key=lambda p: abs(p - middle))
    return text[:cut] + "\n" + text[cut + 1 :]


class Subtitles(Document):
    name = "srt"
    noun = "subtitle"
    keeps_source = True

    def __init__(self, text: str) -> None:
        srt = _require("srt", "srt", "srt")
        try:
            self.subs = list(srt.parse(_normalize_newlines(text)))
        except srt.SRTParseError as exc:
            raise FileFormatError(f"not a valid SRT file: {exc}") from None
        self.units = []
        self._line_counts: list[int] = []
        for sub in self.subs:
            lines = [line.strip() for line in sub.content.split("\n") if line.strip()]
            self._line_counts.append(len(lines))
            # A subtitle is one sentence broken over lines: sent joined, or the server splits it.
            self.units.append(Unit(" ".join(lines), f"subtitle {sub.index}", send=bool(lines)))

    def render(self, outputs: Sequence[str | None], translated: Sequence[bool] | None = None) -> str:
        srt = _require("srt", "srt", "srt")
        subs = []
        for sub, unit, out, n_lines in zip(self.subs, self.units, outputs, self._line_counts):
            new = copy.copy(sub)
            if unit.send:
                new.content = _balance(_one_line(out), n_lines) if out is not None else sub.content
            subs.append(new)
        return str(srt.compose(subs, reindex=False, strict=False))


_PLURAL_FORMS = re.compile(r"nplurals\s*=\s*(\d+)")


class GettextCatalog(Document):
    """Untranslated entries of a PO/POT file: msgid → msgstr; a plural entry sends msgid and
    msgid_plural, msgstr[0] gets the singular and every other form the plural. Translated,
    obsolete entries and the header are left as they are."""

    name = "po"
    noun = "message"

    def __init__(self, text: str) -> None:
        polib = _require("polib", "polib", "po")
        try:
            self.po = polib.pofile(text, wrapwidth=78)
        except (OSError, ValueError) as exc:
            raise FileFormatError(f"not a valid PO file: {exc}") from None
        match = _PLURAL_FORMS.search(self.po.metadata.get("Plural-Forms", ""))
        self.nplurals = int(match.group(1)) if match else 2
        self.units = []
        self._targets: list[tuple[Any, int | None]] = []  # (entry, plural form index or None)
        for entry in self.po:
            if entry.obsolete or not entry.msgid or entry.translated() or self._has_translation(entry):
                continue
            where = f"message {entry.msgid[:40]!r} (line {entry.linenum})"
            if entry.msgid_plural:
                self.units.append(Unit(entry.msgid, where, line=entry.linenum))
                self._targets.append((entry, 0))
                self.units.append(Unit(entry.msgid_plural, where + " plural", line=entry.linenum))
                self._targets.append((entry, 1))
            else:
                self.units.append(Unit(entry.msgid, where, line=entry.linenum))
                self._targets.append((entry, None))

    @staticmethod
    def _has_translation(entry: Any) -> bool:
        if entry.msgid_plural:
            return any(v for v in entry.msgstr_plural.values())
        return bool(entry.msgstr)

    def render(self, outputs: Sequence[str | None], translated: Sequence[bool] | None = None) -> str:
        for (entry, form), out in zip(self._targets, outputs):
            if form is None:
                entry.msgstr = out or ""
            elif form == 0:
                entry.msgstr_plural = {0: out or "", **{k: v for k, v in entry.msgstr_plural.items() if k != 0}}
            else:
                forms = dict(entry.msgstr_plural)
                for k in range(1, self.nplurals):
                    forms[k] = out or ""
                forms.setdefault(0, "")
                entry.msgstr_plural = dict(sorted(forms.items()))
        return str(self.po)


XLIFF_12 = "urn:oasis:names:tc:xliff:document:1.2"
XLIFF_20 = "urn:oasis:names:tc:xliff:document:2.0"


class Xliff(Document):
    """XLIFF 1.2 trans-units and 2.0 segments whose target is missing or empty: source →
    target, ids and everything else kept. A source with inline markup (``<g>``, ``<x/>``,
    ``<pc>``, ``<ph>`` ...) is sent with ``tag_handling="xml"``."""

    name = "xliff"
    noun = "unit"

    def __init__(self, data: bytes, target_lang: str) -> None:
        etree = _require("lxml.etree", "lxml", "xliff")
        self.etree = etree
        try:
            self.root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True))
        except etree.XMLSyntaxError as exc:
            raise FileFormatError(f"not a valid XLIFF (XML) file: {exc}") from None
        ns = etree.QName(self.root).namespace
        if ns not in (XLIFF_12, XLIFF_20):
            raise FileFormatError(f"not an XLIFF 1.2 or 2.0 document (root namespace {ns!r})")
        self.ns = ns
        self.target_lang = target_lang
        self.units = []
        self._slots: list[tuple[Any, Any]] = []  # (source element, the element that holds the target)
        q = {"x": ns}
        if ns == XLIFF_12:
            for tu in self.root.iterfind(".//x:trans-unit", q):
                if tu.get("translate") == "no":
                    continue
                self._add(tu, tu.find("x:source", q), tu.find("x:target", q), f"trans-unit {tu.get('id')!r}")
        else:
            for unit in self.root.iterfind(".//x:unit", q):
                if unit.get("translate") == "no":
                    continue
                for n, seg in enumerate(unit.iterfind("x:segment", q), 1):
                    where = f"unit {unit.get('id')!r} segment {seg.get('id') or n}"
                    self._add(seg, seg.find("x:source", q), seg.find("x:target", q), where)

    def _add(self, holder: Any, source: Any, target: Any, where: str) -> None:
        if source is None:
            return
        if target is not None and (len(target) or (target.text or "").strip()):
            return  # translated already
        inner, markup = self._inner(source)
        self.units.append(
            Unit(inner, where, line=source.sourceline, send=bool(inner.strip()), tag_handling="xml" if markup else None)
        )
        self._slots.append((source, holder))

    def _inner(self, element: Any) -> tuple[str, bool]:
        """The element's content as text, or as XML without namespace declarations when it has
        inline markup."""
        if not len(element):
            return element.text or "", False
        clone = copy.deepcopy(element)
        for el in clone.iter():
            if isinstance(el.tag, str):
                el.tag = self.etree.QName(el).localname
        self.etree.cleanup_namespaces(clone)
        parts = [clone.text or ""]
        parts += [self.etree.tostring(child, encoding="unicode", with_tail=True) for child in clone]
        return "".join(parts), True

    def _fill(self, target: Any, content: str, markup: bool) -> None:
        if not markup:
            target.text = content
            return
        E = self.etree
        wrapper = E.fromstring(f'<target xmlns="{self.ns}">{content}</target>')
        target.text = wrapper.text
        for child in wrapper:
            target.append(child)

    def render(self, outputs: Sequence[str | None], translated: Sequence[bool] | None = None) -> str:
        q = {"x": self.ns}
        flags = translated if translated is not None else [True] * len(outputs)
        for (source, holder), unit, out, done in zip(self._slots, self.units, outputs, flags):
            if out is None or not unit.send:
                continue
            target = holder.find("x:target", q)
            if target is None:
                target = self.etree.Element(f"{{{self.ns}}}target")
                source.addnext(target)
                target.tail = source.tail
                if holder.text is not None and not holder.text.strip():
                    source.tail = holder.text  # the target indented like the source
            for child in list(target):
                target.remove(child)
            try:
                self._fill(target, out, unit.tag_handling == "xml")
            except self.etree.XMLSyntaxError:
                self._fill(target, out, False)  # markup that does not parse is kept as text
            if self.ns == XLIFF_12:
                target.set("state", "translated" if done else "needs-translation")
            else:
                holder.set("state", "translated" if done else "initial")
        if self.ns == XLIFF_12:
            for f in self.root.iterfind(".//x:file", q):
                if f.get("target-language") is None:
                    f.set("target-language", self.target_lang)
        else:
            if self.root.get("trgLang") is None:
                self.root.set("trgLang", self.target_lang)
        return str(self.etree.tostring(self.root, xml_declaration=True, encoding="UTF-8").decode("utf-8")) + "\n"


class Html(Document):
    """The whole document is one text, sent with ``tag_handling="html"``; the server translates
    its text nodes and keeps the markup."""

    name = "html"
    noun = "document"
    keeps_source = True

    def __init__(self, text: str) -> None:
        self.units = [Unit(text, "document", line=1, send=bool(text.strip()), tag_handling="html")]

    def render(self, outputs: Sequence[str | None], translated: Sequence[bool] | None = None) -> str:
        source = self.units[0].text
        out = outputs[0] if outputs else None
        if out is None:
            return source
        trailing = source[len(source.rstrip()) :]
        return out.rstrip() + trailing if trailing and not out.endswith(trailing) else out


def parse_document(
    data: bytes | str,
    fmt: str,
    *,
    unit: str = "line",
    field: str = "text",
    column: str = "text",
    target_lang: str = "de",
    encoding: str = "utf-8",
) -> Document:
    """Parse the input of ``translate_file`` (``data``: the file's bytes, or its text)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if unit not in UNITS:
        raise ValueError(f"unit must be 'line' or 'paragraph', not {unit!r}")
    if fmt == "xliff":
        raw = data if isinstance(data, bytes) else data.encode("utf-8")
        return Xliff(raw.lstrip(b"\xef\xbb\xbf"), target_lang)
    if isinstance(data, bytes):
        enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        try:
            text = data.decode(enc)
        except UnicodeDecodeError as exc:
            raise FileFormatError(f"the input is not valid {encoding}: {exc}") from None
    else:
        text = data.lstrip("\ufeff")
    if fmt == "text":
        return TextParagraphs(text) if unit == "paragraph" else TextLines(text)
    if fmt == "jsonl":
        return JsonLines(text, field)
    if fmt in ("csv", "tsv"):
        return Table(text, column, "\t" if fmt == "tsv" else ",", fmt)
    if fmt == "srt":
        return Subtitles(text)
    if fmt == "po":
        return GettextCatalog(text)
    return Html(text)
