"""Translation memory exchange formats: TMX 1.4b (read and written with lxml) and TSV (read with :mod:`csv`).

Reading is strict where a file is broken (not XML, not TMX, a TSV line without exactly two columns: the whole file
is refused, nothing stored) and lenient where a file is merely wider than ours: a translation unit without both an
English and a German variant (a TMX often holds many languages) is skipped and counted. Inline codes of a TMX
segment (``<bpt>``, ``<ept>``, ``<ph>``, ``<it>``, ``<ut>``: the native codes of the source format) are left out
of its text; ``<hi>`` (highlighted text) is kept.
"""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass, field

from lxml import etree

from .. import __version__
from ..stores.base import MemoryEntry

__all__ = ["FormatError", "Parsed", "parse_tmx", "parse_tsv", "sniff", "tmx_head", "tmx_unit", "TMX_TAIL"]

XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
#: characters XML 1.0 cannot hold (dropped on export; JSON requests may have carried them)
_NOT_XML = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
#: inline elements whose content is native code, not text
_CODES = frozenset({"bpt", "ept", "ph", "it", "ut"})


class FormatError(ValueError):
    """The file cannot be read as the format it claims: ``code`` for the API error, ``message`` says where."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Parsed:
    """What a file holds: (English, German) pairs, in file order, and what was skipped, by reason."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def sniff(data: bytes, filename: str | None) -> str:
    """``tmx`` or ``tsv``: by the file name's suffix, else by the content (XML starts with ``<``)."""
    name = (filename or "").lower()
    if name.endswith((".tmx", ".xml")):
        return "tmx"
    if name.endswith((".tsv", ".tab", ".txt")):
        return "tsv"
    return "tmx" if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<") else "tsv"


def _lang(tuv: etree._Element) -> str:
    """A variant's language (TMX 1.4 ``xml:lang``; 1.1 ``lang``), lower case."""
    return (tuv.get(XML_LANG) or tuv.get("lang") or "").strip().lower()


def _matches(lang: str, want: str) -> bool:
    return lang == want or lang.startswith(want + "-") or lang.startswith(want + "_")


def _seg_text(seg: etree._Element) -> str:
    """The text of a ``<seg>`` without its inline native codes (``<hi>`` text kept)."""
    parts = [seg.text or ""]
    for child in seg:
        tag = etree.QName(child).localname if isinstance(child.tag, str) else ""
        if tag not in _CODES and isinstance(child.tag, str):
            parts.append(_seg_text(child))
        parts.append(child.tail or "")
    return "".join(parts)


def _variants(tu: etree._Element, n: int, langs: tuple[str, ...]) -> dict[str, str]:
    """The texts of a unit's variants in ``langs`` (the first variant of each)."""
    texts: dict[str, str] = {}
    for tuv in tu.iterfind("tuv"):
        lang, seg = _lang(tuv), tuv.find("seg")
        if seg is None:
            raise FormatError("invalid_tmx", f"translation unit {n}: a <tuv> without <seg>")
        for want in langs:
            if _matches(lang, want) and want not in texts:
                texts[want] = _seg_text(seg)
    return texts


def parse_tmx(data: bytes, source_lang: str = "en", target_lang: str = "de") -> Parsed:
    """The (source, target) pairs of a TMX file (1.4b; 1.1-1.3 read too). Raises :class:`FormatError`."""
    parser = etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True, remove_pis=True
    )
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise FormatError("invalid_tmx", f"the file is not well-formed XML: {exc}") from None
    if root is None or etree.QName(root).localname != "tmx":
        raise FormatError("invalid_tmx", "the file is XML but not TMX: its root element must be <tmx>")
    body = root.find("body")
    if body is None:
        raise FormatError("invalid_tmx", "the TMX file has no <body>")
    out = Parsed()
    for n, tu in enumerate(body.iterfind("tu"), 1):
        texts = _variants(tu, n, (source_lang, target_lang))
        if source_lang not in texts or target_lang not in texts:
            out.skip("no_language_pair")
        elif not texts[source_lang].strip() or not texts[target_lang].strip():
            out.skip("empty")
        else:
            out.pairs.append((texts[source_lang], texts[target_lang]))
    return out


def parse_tsv(data: bytes) -> Parsed:
    """``English<TAB>German`` per line (UTF-8; blank lines skipped; no quoting). Raises :class:`FormatError`."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FormatError("invalid_encoding", f"the TSV file is not UTF-8 (byte {exc.start})") from None
    out = Parsed()
    for n, row in enumerate(csv.reader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE), 1):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != 2:
            raise FormatError("invalid_tsv", f"line {n}: {len(row)} columns; each line is English<TAB>German")
        if not row[0].strip() or not row[1].strip():
            out.skip("empty")
            continue
        out.pairs.append((row[0], row[1]))
    return out


# ---------------------------------------------------------------------------- writing (export)
def _stamp(t: float) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))


def tmx_head(source_lang: str = "en") -> str:
    """The start of a TMX 1.4b document, up to ``<body>``."""
    header = etree.Element(
        "header",
        creationtool="batchmt",
        creationtoolversion=__version__,
        datatype="plaintext",
        segtype="sentence",
        adminlang="en",
        srclang=source_lang,
        **{"o-tmf": "batchmt"},
        creationdate=_stamp(time.time()),
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<tmx version="1.4">\n  '
        + etree.tostring(header, encoding="unicode")
        + "\n  <body>\n"
    )


TMX_TAIL = "  </body>\n</tmx>\n"


def tmx_unit(entry: MemoryEntry, source_lang: str = "en", target_lang: str = "de") -> str:
    """One ``<tu>`` (its origin, and a model entry's signature, as ``<prop>``s)."""
    tu = etree.Element("tu", creationdate=_stamp(entry.created_at), usagecount=str(entry.hits))
    if entry.hits:
        tu.set("lastusagedate", _stamp(entry.last_used))
    etree.SubElement(tu, "prop", type="x-batchmt-origin").text = entry.origin
    if entry.signature:
        etree.SubElement(tu, "prop", type="x-batchmt-signature").text = _NOT_XML.sub("", entry.signature)
    for lang, text in ((source_lang, entry.source), (target_lang, entry.target)):
        tuv = etree.SubElement(tu, "tuv", {XML_LANG: lang})
        etree.SubElement(tuv, "seg").text = _NOT_XML.sub("", text)
    return "    " + etree.tostring(tu, encoding="unicode") + "\n"
