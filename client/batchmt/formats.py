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
html       .html .htm .xhtml    the whole document, sent with ``tag_handling="html"``; and the values of
                                its translatable attributes (``alt``, ``title``, ``placeholder``,
                                ``aria-label``, ``<meta name="description">`` ...), one unit each
docx       .docx                a paragraph (body, tables, headers, footers) with its runs sent as
                                inline XML tags, so formatting stays on its words (``python-docx``)
pptx       .pptx                a paragraph of a text frame, table cell or the notes (``python-pptx``)
=========  ===================  ===================================================================

Machine translation is marked for review the way each format says (``review=True``, the default): PO entries
get the ``fuzzy`` flag (``msgfmt`` leaves them out), XLIFF 1.2 targets ``state="needs-review-translation"`` with
``state-qualifier="mt-suggestion"``, XLIFF 2.0 segments ``state="translated"`` (not ``reviewed``/``final``) with
``subState="batchmt:mt"``. HTML gets ``lang`` set to the target language.

A binary format that is not one of these (PDF, .doc, .odt, .xlsx, images, archives ...) is refused as
"format not supported" before any request.

A unit's output is ``None`` when it is left untranslated (a failed unit with
``on_failure="empty"``): text, JSONL and CSV write an empty string, PO an empty msgstr, XLIFF no
target; SRT and HTML have no empty slot and keep the source text.

srt, polib, lxml, python-docx and python-pptx are the optional extra ``formats`` (``pip install 'batchmt[formats]'``),
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
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html import escape as html_escape
from html.parser import HTMLParser
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

FORMATS = ("text", "jsonl", "csv", "tsv", "srt", "po", "xliff", "html", "docx", "pptx")
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
    ".docx": "docx",
    ".pptx": "pptx",
}
#: binary formats nobody should send as text: "format not supported" (not "not valid utf-8")
_UNSUPPORTED = {
    ".pdf": "PDF",
    ".doc": "Word 97-2003 (.doc)",
    ".docm": "Word with macros (.docm)",
    ".dotx": "Word template (.dotx)",
    ".odt": "OpenDocument text (.odt)",
    ".odp": "OpenDocument presentation (.odp)",
    ".ods": "OpenDocument spreadsheet (.ods)",
    ".rtf": "RTF",
    ".xls": "Excel (.xls)",
    ".xlsx": "Excel (.xlsx)",
    ".ppt": "PowerPoint 97-2003 (.ppt)",
    ".epub": "EPUB",
    ".zip": "ZIP archive",
    ".gz": "gzip archive",
    ".png": "PNG image",
    ".jpg": "JPEG image",
    ".jpeg": "JPEG image",
    ".gif": "GIF image",
}
#: leading bytes of binary files (checked when a text format's input does not decode)
_MAGIC = (
    (b"%PDF-", "PDF"),
    (b"PK\x03\x04", "a ZIP container (.docx, .xlsx, .odt, ...)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an OLE2 document (.doc, .xls, .ppt)"),
    (b"{\\rtf", "RTF"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x1f\x8b", "a gzip archive"),
)


class FileFormatError(BatchmtError):
    """The input file cannot be read in the format asked for (raised before any request)."""


def detect_format(name: str | None) -> str:
    """The format of a file from its extension (``text`` when unknown or when there is no name).

    Raises :class:`FileFormatError` ("format not supported") for a binary format batchmt does not read."""
    if not name:
        return "text"
    ext = os.path.splitext(str(name))[1].lower()
    if ext in _UNSUPPORTED:
        raise FileFormatError(_not_supported(f"{_UNSUPPORTED[ext]} ({ext})"))
    return _EXTENSIONS.get(ext, "text")


def _not_supported(what: str) -> str:
    return f"format not supported: {what}; batchmt translates these formats: {', '.join(FORMATS)} (see --format)"


def _sniff_binary(data: bytes) -> str | None:
    """What a binary input is, from its first bytes (None: it may be text)."""
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return what
    return "binary data (NUL bytes)" if b"\x00" in data[:4096] else None


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
    binary: ClassVar[bool] = False
    """``render`` returns bytes (.docx, .pptx), written as they are."""
    keeps_source: ClassVar[bool] = False
    """No empty slot in this format: a failed unit keeps its source text (a partial one its
    partial translation) even with ``on_failure="empty"``."""

    units: list[Unit]

    def render(self, outputs: Sequence[str | None], translated: Sequence[bool] | None = None) -> str | bytes:
        """The output file (bytes for a binary format); ``outputs[i]`` is unit ``i``'s text (``None``: left
        untranslated) and ``translated[i]`` whether it is a full translation (not the source kept in place)."""
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

    def __init__(self, text: str, review: bool = True) -> None:
        polib = _require("polib", "polib", "po")
        self.review = review
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
            if out and self.review and "fuzzy" not in entry.flags:
                entry.flags.append("fuzzy")  # machine translation: msgfmt leaves it out until a translator clears it
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

    def __init__(self, data: bytes, target_lang: str, review: bool = True) -> None:
        etree = _require("lxml.etree", "lxml", "xliff")
        self.review = review
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
                if done and self.review:  # unreviewed machine translation, as XLIFF 1.2 names it
                    target.set("state", "needs-review-translation")
                    target.set("state-qualifier", "mt-suggestion")
                else:
                    target.set("state", "translated" if done else "needs-translation")
                    target.attrib.pop("state-qualifier", None)
            else:
                # 2.0: "translated" is before review ("reviewed", "final" come after); subState says it is MT
                holder.set("state", "translated" if done else "initial")
                if done and self.review:
                    holder.set("subState", "batchmt:mt")
                else:
                    holder.attrib.pop("subState", None)
        if self.ns == XLIFF_12:
            for f in self.root.iterfind(".//x:file", q):
                if f.get("target-language") is None:
                    f.set("target-language", self.target_lang)
        else:
            if self.root.get("trgLang") is None:
                self.root.set("trgLang", self.target_lang)
        return str(self.etree.tostring(self.root, xml_declaration=True, encoding="UTF-8").decode("utf-8")) + "\n"


#: attributes whose values are text for readers (WCAG, HTML's own list of translatable attributes)
_HTML_ATTRS = frozenset({"alt", "title", "placeholder", "aria-label", "aria-description", "label"})
#: <meta name=... / property=...> whose content is text
_HTML_META = frozenset({"description", "og:title", "og:description", "twitter:title", "twitter:description"})


class _StartTags(HTMLParser):
    """Every start tag of an HTML document: (offset, its exact text, tag name, attributes)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=False)
        self.tags: list[tuple[int, str, str, list[tuple[str, str | None]]]] = []
        self._starts = [0]
        for line in text.split("\n"):
            self._starts.append(self._starts[-1] + len(line) + 1)
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        line, col = self.getpos()
        raw = self.get_starttag_text() or ""
        self.tags.append((self._starts[line - 1] + col, raw, tag, attrs))

    handle_startendtag = handle_starttag


def _translatable_attrs(tag: str, attrs: list[tuple[str, str | None]]) -> Iterator[tuple[str, str]]:
    """The (attribute, value) pairs of one start tag that are text to translate."""
    if tag == "meta":
        found = dict(attrs)
        kind = (found.get("name") or found.get("property") or "").lower()
        if kind in _HTML_META and (found.get("content") or "").strip():
            yield "content", found["content"] or ""
        return
    for name, value in attrs:
        if name in _HTML_ATTRS and value and value.strip():
            yield name, value


def _set_attr(raw: str, name: str, value: str) -> str:
    """A start tag's text with attribute ``name`` set to ``value`` (added when missing), the rest as written."""
    quoted = '"' + html_escape(value, quote=True) + '"'
    pattern = re.compile(r"(\s" + re.escape(name) + r"\s*=\s*)(\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+)", re.I)
    if pattern.search(raw):
        return pattern.sub(lambda m: m.group(1) + quoted, raw, count=1)
    m = re.match(r"<[A-Za-z][^\s/>]*", raw)
    end = m.end() if m else len(raw)
    return f"{raw[:end]} {name}={quoted}{raw[end:]}"


class Html(Document):
    """The whole document is one text, sent with ``tag_handling="html"``; the server translates
    its text nodes and keeps the markup. The values of translatable attributes (``alt``, ``title``,
    ``placeholder``, ``aria-label``, ``<meta name="description" content>`` ...) are units of their own,
    written back into the translated document's tags; ``<html lang>`` becomes the target language."""

    name = "html"
    noun = "text"
    keeps_source = True

    def __init__(self, text: str, target_lang: str = "de") -> None:
        self.target_lang = target_lang
        self.units = [Unit(text, "document", line=1, send=bool(text.strip()), tag_handling="html")]
        #: (index among the start tags, tag, attribute, source value) of each attribute unit
        self._attrs: list[tuple[int, str, str, str]] = []
        try:
            tags = _StartTags(text).tags
        except (AssertionError, ValueError):  # HTMLParser gives up on some broken markup: the text only
            tags = []
        self._tag_count = len(tags)
        for n, (offset, _raw, tag, attrs) in enumerate(tags):
            for attr, value in _translatable_attrs(tag, attrs):
                line = text.count("\n", 0, offset) + 1
                self.units.append(Unit(value, f"<{tag}> {attr} (line {line})", line=line))
                self._attrs.append((n, tag, attr, value))

    def render(self, outputs: Sequence[str | None], translated: Sequence[bool] | None = None) -> str:
        source = self.units[0].text
        out = outputs[0] if outputs else None
        flags = list(translated) if translated is not None else [o is not None for o in outputs]
        if out is None:
            doc = source
        else:
            trailing = source[len(source.rstrip()) :]
            doc = out.rstrip() + trailing if trailing and not out.endswith(trailing) else out
        try:
            tags = _StartTags(doc).tags
        except (AssertionError, ValueError):
            return doc
        edits: dict[int, str] = {}  # tag index -> its new text

        def tag_text(n: int) -> str:
            return edits.get(n, tags[n][1])

        same_shape = len(tags) == self._tag_count
        used: set[int] = set()
        for (n, tag, attr, value), text in zip(self._attrs, outputs[1:]):
            if text is None or text == value:
                continue
            if not same_shape:  # the markup changed: the first unused tag with this attribute value
                n = next((k for k, t in enumerate(tags) if k not in used and t[2] == tag and (attr, value) in t[3]), -1)
                if n < 0:
                    continue
            used.add(n)
            edits[n] = _set_attr(tag_text(n), attr, text)
        if flags and flags[0]:  # the document is in the target language now
            for n, t in enumerate(tags):
                if t[2] == "html":
                    edits[n] = _set_attr(tag_text(n), "lang", self.target_lang)
                    break
        for n in sorted(edits, reverse=True):
            offset, raw = tags[n][0], tags[n][1]
            doc = doc[:offset] + edits[n] + doc[offset + len(raw) :]
        return doc


class _OfficeDocument(Document):
    """A paragraph per unit. A paragraph of one run is sent as plain text; with several runs (formatting changes),
    each run is an inline XML tag (``<r0>Hello </r0><r1>world</r1>``, an image or field ``<x2/>``) sent with
    ``tag_handling="xml"``: the server keeps the tags around their words, and the output puts each run's
    translation back into that run, in the translation's word order, so bold, italics, links and styles stay on the
    words they marked. Adjacent runs with the same formatting are merged first (Word splits runs for
    spell-checking and revision marks)."""

    noun = "paragraph"
    binary = True
    keeps_source = True
    etree: Any
    _paras: list[tuple[Any, list[tuple[str, Any]], set[int]]]

    def _paragraph(self, p: Any, where: str) -> None:
        items = self._items(p)
        texts = {k: self._get(el) for k, (kind, el) in enumerate(items) if kind == "text"}
        if not any(t.strip() for t in texts.values()):
            return
        # the base formatting (the run with the most text): its runs go as bare text, the others as tags, so that
        # the tags are inline for the server (XML with text beside them)
        runs = [k for k in texts if self._is_run(items[k][1])]
        base_props = self._props(items[max(runs, key=lambda k: len(texts[k]))][1]) if runs else None
        base = {k for k in runs if self._props(items[k][1]) == base_props}
        if len(items) == 1 or all(k in base for k in range(len(items))):
            unit = Unit("".join(texts[k] for k in sorted(texts)), where)
        else:
            parts = []
            for k, (kind, _el) in enumerate(items):
                if k in base:
                    parts.append(html_escape(texts[k], quote=False))
                elif kind == "text":
                    parts.append(f"<r{k}>{html_escape(texts[k], quote=False)}</r{k}>")
                else:
                    parts.append(f"<x{k}/>")
            unit = Unit("".join(parts), where, tag_handling="xml")
        self.units.append(unit)
        self._paras.append((p, items, base))

    def _merge_runs(self, items: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
        merged: list[tuple[str, Any]] = []
        for kind, el in items:
            if (
                merged
                and kind == "text"
                and merged[-1][0] == "text"
                and self._is_run(el)
                and self._is_run(merged[-1][1])
                and el.getprevious() is merged[-1][1]
                and self._props(el) == self._props(merged[-1][1])
            ):
                prev = merged[-1][1]
                self._set(prev, self._get(prev) + self._get(el))
                el.getparent().remove(el)
                continue
            merged.append((kind, el))
        return merged

    def _pieces(self, out: str, items: list[tuple[str, Any]]) -> list[tuple[int | None, str]]:
        """The translation as (item index or None for bare text, its text), in the translation's order."""
        try:
            wrapper = self.etree.fromstring(f"<p>{out}</p>")
        except self.etree.XMLSyntaxError:  # not XML: its words as bare text
            return [(None, re.sub(r"<[^>]*>", "", out))]
        pieces: list[tuple[int | None, str]] = [(None, wrapper.text or "")]
        seen: set[int] = set()
        for child in wrapper:
            m = re.fullmatch(r"[rx](\d+)", child.tag if isinstance(child.tag, str) else "")
            k = int(m.group(1)) if m else -1
            if 0 <= k < len(items) and k not in seen:
                seen.add(k)
                pieces.append((k, "".join(child.itertext())))
            else:  # a tag we did not send: its words stay, as bare text
                pieces.append((None, "".join(child.itertext())))
            pieces.append((None, child.tail or ""))
        merged: list[tuple[int | None, str]] = []
        for index, piece in pieces:
            if index is None and merged and merged[-1][0] is None:
                merged[-1] = (None, merged[-1][1] + piece)
            elif index is not None or piece:
                merged.append((index, piece))
        return merged

    def _fill(self, p: Any, items: list[tuple[str, Any]], base: set[int], out: str, markup: bool) -> None:
        text_items = [k for k, (kind, _) in enumerate(items) if kind == "text"]
        if not markup:
            self._set(items[text_items[0]][1], out)
            for k in text_items[1:]:
                self._set(items[k][1], "")
            return
        parent = items[0][1].getparent()
        siblings = list(parent)
        positions = sorted(siblings.index(el) for _, el in items if el.getparent() is parent)
        movable = len(positions) == len(items) and positions == list(range(positions[0], positions[0] + len(items)))
        pool = [items[k][1] for k in sorted(base)]
        template = pool[0] if pool else None
        order: list[Any] = []
        last_bare: Any = None
        for index, text in self._pieces(out, items):
            if index is not None:
                if items[index][0] == "text":
                    self._set(items[index][1], text)
                order.append(items[index][1])
                continue
            if pool:
                el = pool.pop(0)
            elif template is not None and movable:
                el = copy.deepcopy(template)  # more bare pieces than base runs: one more run of that formatting
            elif last_bare is not None or text_items:
                el = last_bare if last_bare is not None else items[text_items[0]][1]
                self._set(el, self._get(el) + text)
                continue
            else:
                continue
            self._set(el, text)
            order.append(el)
            last_bare = el
        for el in pool:  # base runs the translation did not need
            self._set(el, "")
        for k, (kind, el) in enumerate(items):
            if el not in order:
                if kind == "text" and k not in base:
                    self._set(el, "")
                order.append(el)
        if movable:
            for el in order:
                if el.getparent() is parent:
                    parent.remove(el)
            for i, el in enumerate(order):
                parent.insert(positions[0] + i, el)

    def render(self, outputs: Sequence[str | None], translated: Sequence[bool] | None = None) -> bytes:
        for (p, items, base), unit, out in zip(self._paras, self.units, outputs):
            if out is not None:
                self._fill(p, items, base, out, unit.tag_handling == "xml")
        buf = io.BytesIO()
        self._save(buf)
        return buf.getvalue()

    # format specifics
    def _items(self, p: Any) -> list[tuple[str, Any]]:
        raise NotImplementedError

    def _is_run(self, el: Any) -> bool:
        raise NotImplementedError

    def _props(self, el: Any) -> bytes:
        raise NotImplementedError

    def _get(self, el: Any) -> str:
        raise NotImplementedError

    def _set(self, el: Any, text: str) -> None:
        raise NotImplementedError

    def _save(self, buf: io.BytesIO) -> None:
        raise NotImplementedError


def _open_package(module: str, package: str, fmt: str, data: bytes) -> Any:
    lib = _require(module, package, fmt)
    if not data.startswith(b"PK\x03\x04"):
        raise FileFormatError(f"not a valid .{fmt} file (not a ZIP package)")
    try:
        return lib.Document(io.BytesIO(data)) if fmt == "docx" else lib.Presentation(io.BytesIO(data))
    except Exception as exc:  # python-docx/pptx raise several types for a broken package
        raise FileFormatError(f"not a valid .{fmt} file: {type(exc).__name__}: {exc}") from None


_W_TEXT_CHILDREN = frozenset({"rPr", "t", "tab", "br", "cr", "noBreakHyphen", "softHyphen", "lastRenderedPageBreak"})


class WordDocument(_OfficeDocument):
    """A Word .docx (python-docx): every paragraph of the body, tables (nested too), text boxes, headers and
    footers."""

    name = "docx"

    def __init__(self, data: bytes) -> None:
        self.docx = _open_package("docx", "python-docx", "docx", data)
        self.etree = _require("lxml.etree", "lxml", "docx")
        from docx.oxml.ns import qn
        from docx.text.run import Run

        self._qn = qn
        self._Run = Run
        self.units = []
        self._paras = []
        roots = [("body", self.docx.element.body)]
        seen = set()
        for number, section in enumerate(self.docx.sections, 1):
            for kind in (
                "header",
                "footer",
                "first_page_header",
                "first_page_footer",
                "even_page_header",
                "even_page_footer",
            ):
                part = getattr(section, kind)
                if part.is_linked_to_previous or id(part._element) in seen:
                    continue
                seen.add(id(part._element))
                roots.append((f"section {number} {kind.replace('_', ' ')}", part._element))
        for label, root in roots:
            for n, p in enumerate(root.iter(qn("w:p")), 1):
                self._paragraph(p, f"{label} paragraph {n}")

    def _local(self, el: Any) -> str:
        return self.etree.QName(el).localname if isinstance(el.tag, str) else ""

    def _is_run(self, el: Any) -> bool:
        return self._local(el) == "r"

    def _text_run(self, el: Any) -> bool:
        return self._is_run(el) and all(self._local(c) in _W_TEXT_CHILDREN for c in el)

    def _items(self, p: Any) -> list[tuple[str, Any]]:
        for proof in p.findall(self._qn("w:proofErr")):  # spell-check marks: meaningless once translated
            p.remove(proof)
        items: list[tuple[str, Any]] = []
        for el in p:
            name = self._local(el)
            if name == "r":
                if self._text_run(el):
                    items.append(("text", el))
                elif el.find(self._qn("w:t")) is not None or len(el) > 1:
                    items.append(("fixed", el))
            elif name == "hyperlink":
                runs = [r for r in el if self._local(r) == "r"]
                items.append(("text" if runs and all(self._text_run(r) for r in runs) else "fixed", el))
            elif name in ("fldSimple", "sdt", "smartTag", "ins", "del", "oMath", "oMathPara"):
                items.append(("fixed", el))
        return self._merge_runs(items)

    def _props(self, el: Any) -> bytes:
        rpr = el.find(self._qn("w:rPr"))
        return b"" if rpr is None else self.etree.tostring(rpr)

    def _runs_of(self, el: Any) -> list[Any]:
        return [r for r in el if self._local(r) == "r"] if self._local(el) == "hyperlink" else [el]

    def _get(self, el: Any) -> str:
        return "".join(self._Run(r, None).text for r in self._runs_of(el))  # type: ignore[arg-type]

    def _set(self, el: Any, text: str) -> None:
        runs = self._runs_of(el)
        self._Run(runs[0], None).text = text  # type: ignore[arg-type]
        for r in runs[1:]:
            self._Run(r, None).text = ""  # type: ignore[arg-type]

    def _save(self, buf: io.BytesIO) -> None:
        self.docx.save(buf)


class PowerPointDocument(_OfficeDocument):
    """A PowerPoint .pptx (python-pptx): the paragraphs of every text frame (group shapes too), table cell and
    the slides' notes."""

    name = "pptx"

    def __init__(self, data: bytes) -> None:
        self.prs = _open_package("pptx", "python-pptx", "pptx", data)
        self.etree = _require("lxml.etree", "lxml", "pptx")
        from pptx.oxml.ns import qn

        self._qn = qn
        self.units = []
        self._paras = []
        for number, slide in enumerate(self.prs.slides, 1):
            frames = list(self._frames(slide.shapes))
            if slide.has_notes_slide:
                frames.append(("notes", slide.notes_slide.notes_text_frame))
            for label, frame in frames:
                if frame is None:
                    continue
                for n, para in enumerate(frame.paragraphs, 1):
                    self._paragraph(para._p, f"slide {number} {label} paragraph {n}")

    def _frames(self, shapes: Any) -> Iterator[tuple[str, Any]]:
        for shape in shapes:
            if getattr(shape, "shape_type", None) is not None and hasattr(shape, "shapes"):  # a group
                yield from self._frames(shape.shapes)
            if getattr(shape, "has_text_frame", False):
                yield f"shape {shape.name!r}", shape.text_frame
            if getattr(shape, "has_table", False):
                for r, row in enumerate(shape.table.rows, 1):
                    for c, cell in enumerate(row.cells, 1):
                        yield f"table {shape.name!r} cell {r},{c}", cell.text_frame

    def _local(self, el: Any) -> str:
        return self.etree.QName(el).localname if isinstance(el.tag, str) else ""

    def _is_run(self, el: Any) -> bool:
        return self._local(el) == "r"

    def _items(self, p: Any) -> list[tuple[str, Any]]:
        items: list[tuple[str, Any]] = []
        for el in p:
            name = self._local(el)
            if name == "r":
                items.append(("text", el))
            elif name in ("br", "fld"):
                items.append(("fixed", el))
        return self._merge_runs(items)

    def _props(self, el: Any) -> bytes:
        rpr = el.find(self._qn("a:rPr"))
        return b"" if rpr is None else self.etree.tostring(rpr)

    def _get(self, el: Any) -> str:
        t = el.find(self._qn("a:t"))
        return (t.text or "") if t is not None else ""

    def _set(self, el: Any, text: str) -> None:
        t = el.find(self._qn("a:t"))
        if t is None:
            t = self.etree.SubElement(el, self._qn("a:t"))
        t.text = text

    def _save(self, buf: io.BytesIO) -> None:
        self.prs.save(buf)


def parse_document(
    data: bytes | str,
    fmt: str,
    *,
    unit: str = "line",
    field: str = "text",
    column: str = "text",
    target_lang: str = "de",
    encoding: str = "utf-8",
    review: bool = True,
) -> Document:
    """Parse the input of ``translate_file`` (``data``: the file's bytes, or its text). ``review``: mark
    machine translation for review where the format can (PO ``fuzzy``, XLIFF states)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if unit not in UNITS:
        raise ValueError(f"unit must be 'line' or 'paragraph', not {unit!r}")
    if fmt in ("docx", "pptx"):
        if not isinstance(data, bytes):
            raise FileFormatError(f"a .{fmt} file is binary: pass its path or a binary stream, not text")
        return WordDocument(data) if fmt == "docx" else PowerPointDocument(data)
    if fmt == "xliff":
        raw = data if isinstance(data, bytes) else data.encode("utf-8")
        return Xliff(raw.lstrip(b"\xef\xbb\xbf"), target_lang, review)
    if isinstance(data, bytes):
        enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        try:
            text = data.decode(enc)
        except UnicodeDecodeError as exc:
            binary = _sniff_binary(data)
            if binary is not None:
                raise FileFormatError(_not_supported(f"the input is {binary}")) from None
            raise FileFormatError(f"the input is not valid {encoding}: {exc}") from None
        if "\x00" in text[:4096]:
            raise FileFormatError(_not_supported("the input is binary data (NUL bytes)"))
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
        return GettextCatalog(text, review)
    return Html(text, target_lang)
