"""``tag_handling: "html" | "xml"``: translate the text of markup, keep the markup.

The document is parsed with lxml (``lxml.html`` for HTML, ``lxml.etree`` for XML; XML that does not
parse is a :class:`MarkupError`). Its text is cut into *runs*: the text of a block element up to the
next nested block (``<p>``, ``<li>``, ``<td>``, ...), with its inline elements (``<b>``, ``<i>``,
``<a href>``, ...) replaced by markers ``[TAG_1]``, ``[TAG_2]`` (one for the opening tag, one for the
closing tag; one for an empty element such as ``<br>``, a comment, or an element whose content is
not translated: ``<code>``, ``<script>``, ``<style>``, ``<pre>``, ``translate="no"``...). A run is
translated as a text (segmented into sentences, the markers protected and verified in order), so an
inline tag stays inside its sentence. ``render`` puts each translated run's pieces back into the
text slots (``.text`` / ``.tail``) they came from: the element tree itself is never changed, so the
output is well-formed and has the same tag sequence as the input (attributes untouched).

In XML, where no tag is known to be inline, an element is inline when its parent has mixed content
(text next to it). HTML is serialised by lxml (entities become characters; attribute quoting may
change); a fragment stays a fragment, a document (``<!DOCTYPE``/``<html>``) a document.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from lxml import etree
from lxml import html as lxml_html

__all__ = ["MarkupDocument", "MarkupError", "parse_markup"]

TagHandling = Literal["html", "xml"]

HTML_INLINE = frozenset(
    "a abbr acronym b bdi bdo big br cite code data del dfn em font i img ins kbd label mark q rp rt ruby s samp "
    "small span strike strong sub sup time tt u var wbr".split()
)
#: content never translated (kept as it is)
KEEP_CONTENT = frozenset("script style code pre kbd samp var textarea noscript template svg math".split())
_VOID_HTML = frozenset("br img wbr hr input meta link area base col embed source track param".split())
_DOCUMENT = re.compile(r"\s*(?:<!--.*?-->\s*)*(?:<!doctype|<html)", re.I | re.S)
_XML_DECL = re.compile(r"\s*<\?xml[^>]*\?>")


class MarkupError(ValueError):
    """The text is not parsable markup of the kind asked for."""


Slot = tuple[etree._Element, str]  # (element, "text" | "tail")


@dataclass
class Run:
    """The text of a block up to its next nested block: slots joined by markers."""

    slots: list[Slot] = field(default_factory=list)
    markers: list[str] = field(default_factory=list)  # len(slots) - 1

    def source(self) -> str:
        parts = [getattr(*self.slots[0]) or ""]
        for marker, slot in zip(self.markers, self.slots[1:]):
            parts += [marker, getattr(*slot) or ""]
        return "".join(parts)

    def marker_spans(self, text: str | None = None) -> list[tuple[int, int]]:
        """Where this run's markers are in ``text`` (default: the source), in order."""
        text = self.source() if text is None else text
        spans, pos = [], 0
        for m in self.markers:
            a = text.find(m, pos)
            if a < 0:
                raise ValueError(f"marker {m} missing from a translated run")
            spans.append((a, a + len(m)))
            pos = a + len(m)
        return spans


class MarkupDocument:
    def __init__(self, kind: TagHandling, root: etree._Element, fragment: bool, head: str = "") -> None:
        self.kind, self.root, self.fragment, self.head = kind, root, fragment, head
        self.prefix = _marker_prefix(root)
        self._count = 0
        self.runs: list[Run] = []
        self._block(root)
        self.runs = [r for r in self.runs if any((getattr(el, attr) or "").strip() for el, attr in r.slots)]

    # ---- the walk
    def _marker(self) -> str:
        self._count += 1
        return f"[{self.prefix}_{self._count}]"

    def _keeps(self, el: etree._Element) -> bool:
        if not isinstance(el.tag, str):  # comment, processing instruction, entity
            return True
        return (
            _local(el.tag).lower() in KEEP_CONTENT
            or el.get("translate") == "no"
            or "notranslate" in (el.get("class") or "").split()
        )

    def _inline(self, el: etree._Element) -> bool:
        if not isinstance(el.tag, str):
            return True
        parent = el.getparent()
        if self.kind == "html":
            return _local(el.tag).lower() in HTML_INLINE
        if parent is None:
            return False
        return bool((parent.text or "").strip()) or any((c.tail or "").strip() for c in parent)

    def _block(self, el: etree._Element) -> None:
        if self._keeps(el):
            return
        run = Run(slots=[(el, "text")])
        for child in el:
            if self._inline(child):
                self._inline_into(child, run)
            else:
                self.runs.append(run)
                self._block(child)
                run = Run(slots=[(child, "tail")])
        self.runs.append(run)

    def _inline_into(self, el: etree._Element, run: Run) -> None:
        empty = (
            isinstance(el.tag, str)
            and not len(el)
            and not (el.text or "").strip()
            and (el.text is None or _local(el.tag).lower() in _VOID_HTML)
        )
        if self._keeps(el) or empty:
            run.markers.append(self._marker())
            run.slots.append((el, "tail"))
            return
        run.markers.append(self._marker())
        run.slots.append((el, "text"))
        for child in el:
            if self._inline(child):
                self._inline_into(child, run)
            else:  # a block inside an inline element: its own runs; here a marker
                self._block(child)
                run.markers.append(self._marker())
                run.slots.append((child, "tail"))
        run.markers.append(self._marker())
        run.slots.append((el, "tail"))

    # ---- back
    def render(self, translated: list[str]) -> str:
        """The document with run ``i``'s text replaced by ``translated[i]`` (markers in their order)."""
        if len(translated) != len(self.runs):
            raise ValueError(f"{len(translated)} translations for {len(self.runs)} runs")
        for run, text in zip(self.runs, translated):
            pieces, pos = [], 0
            for a, b in run.marker_spans(text):
                pieces.append(text[pos:a])
                pos = b
            pieces.append(text[pos:])
            for (el, attr), piece in zip(run.slots, pieces):
                setattr(el, attr, piece or None)
        return self._serialise()

    def _serialise(self) -> str:
        if self.kind == "html":
            if not self.fragment:
                doctype = self.root.getroottree().docinfo.doctype
                return lxml_html.tostring(self.root, encoding="unicode", doctype=doctype or None)
            parts = [self.root.text or ""]
            parts += [lxml_html.tostring(c, encoding="unicode", with_tail=True) for c in self.root]
            return "".join(parts)
        if self.fragment:
            parts = [_escape(self.root.text or "")]
            parts += [etree.tostring(c, encoding="unicode", with_tail=True) for c in self.root]
            return "".join(parts)
        return self.head + etree.tostring(self.root.getroottree(), encoding="unicode")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_PREFIX_USED = re.compile(r"\[TAG(\d{0,9})_")


def _marker_prefix(root: etree._Element) -> str:
    """``TAG``, or ``TAG<n>`` with the smallest n whose ``[TAG<n>_`` the text does not hold (one pass over the
    text: a probe of the whole text per candidate was quadratic)."""
    text = "".join(root.itertext())
    used = {m.group(1) for m in _PREFIX_USED.finditer(text)}
    if "" not in used:
        return "TAG"
    n = 1
    while str(n) in used:
        n += 1
    return f"TAG{n}"


def parse_markup(text: str, kind: TagHandling) -> MarkupDocument:
    """Parse ``text`` as HTML or XML (a document or a fragment). Raises :class:`MarkupError`."""
    if kind == "html":
        try:
            if _DOCUMENT.match(text):
                return MarkupDocument(kind, lxml_html.document_fromstring(text), fragment=False)
            return MarkupDocument(kind, lxml_html.fragment_fromstring(text, create_parent="div"), fragment=True)
        except (etree.ParserError, etree.XMLSyntaxError, ValueError) as e:
            raise MarkupError(f"not parsable as HTML: {e}") from None
    if kind != "xml":
        raise ValueError(f"tag_handling must be 'html' or 'xml', not {kind!r}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, remove_blank_text=False)
    m = _XML_DECL.match(text)
    try:
        if m or text.lstrip().startswith("<!DOCTYPE"):
            body = text[m.end() :] if m else text
            root = etree.fromstring(body.encode("utf-8"), parser)
            return MarkupDocument(kind, root, fragment=False, head=text[: m.end()] + "\n" if m else "")
        root = etree.fromstring(f"<batchmt-fragment>{text}</batchmt-fragment>".encode(), parser)
        return MarkupDocument(kind, root, fragment=True)
    except etree.XMLSyntaxError as e:
        raise MarkupError(f"not well-formed XML: {e}") from None


def tag_sequence(markup: str, kind: TagHandling) -> list[str]:
    """Start tags in document order (for tests and checks)."""
    doc = parse_markup(markup, kind)
    return [_local(el.tag) for el in doc.root.iter() if isinstance(el.tag, str)]
