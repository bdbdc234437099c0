"""Glossary entries: read them (DeepL's TSV/CSV, TMX), check them, find them in a sentence.

Reading: TSV and CSV with :mod:`csv` (DeepL v2 ``entries_format``: ``tsv`` | ``csv``; a CSV row may carry DeepL's
optional third and fourth columns, the language codes, which must then be the glossary's), TMX with ``lxml``
(entities and network access off). Every entry is checked before anything is stored: no empty term, no term over
the length limit, no control characters or surrounding whitespace, no source term twice; the count limit stops the
reading early (a 1-million-entry upload is refused after the limit, not parsed whole).

Matching (:class:`TermIndex`): the sentence's words, lower-cased, looked up as n-grams up to the longest source term
(a dict lookup per n-gram: linear in the sentence, whatever the glossary's size); longest match first, left to
right, whole words only.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ..protocol.errors import APIError

__all__ = ["Limits", "TermIndex", "Match", "parse_entries", "parse_tmx", "check_entries", "digest"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_WORD = re.compile(r"\w+(?:[-'’]\w+)*")


@dataclass(frozen=True)
class Limits:
    max_entries: int
    max_term_chars: int


def _too_many(limits: Limits) -> APIError:
    return APIError(
        413,
        "glossary_too_large",
        f"the glossary has more than {limits.max_entries} entries, the limit per glossary",
        param="entries",
    )


def parse_entries(
    text: str, fmt: str, limits: Limits, source_lang: str = "en", target_lang: str = "de"
) -> list[tuple[str, str]]:
    """DeepL's ``entries`` text: one entry per line, source and target separated by a tab (``tsv``) or a comma
    (``csv``, RFC 4180 quoting). Blank lines are skipped."""
    if fmt not in ("tsv", "csv"):
        raise APIError(422, "invalid_entries_format", "entries_format must be 'tsv' or 'csv'", param="entries_format")
    delimiter = "\t" if fmt == "tsv" else ","
    reader = csv.reader(
        io.StringIO(text),
        delimiter=delimiter,
        quoting=csv.QUOTE_NONE if fmt == "tsv" else csv.QUOTE_MINIMAL,
        strict=True,
    )
    out: list[tuple[str, str]] = []
    try:
        for row in reader:
            if not row or all(not c.strip() for c in row):
                continue
            line = reader.line_num
            if len(row) < 2 or (fmt == "tsv" and len(row) != 2) or len(row) > 4:
                raise APIError(
                    422,
                    "invalid_glossary_entry",
                    f"line {line}: an entry is a source term and a target term separated by "
                    + ("one tab" if fmt == "tsv" else "a comma (optionally followed by the two language codes)"),
                    param="entries",
                )
            if len(row) == 4 and (row[2].strip().lower(), row[3].strip().lower()) != (source_lang, target_lang):
                raise APIError(
                    422,
                    "invalid_glossary_entry",
                    f"line {line}: the entry's languages {row[2]!r}, {row[3]!r} are not the glossary's "
                    f"({source_lang}, {target_lang})",
                    param="entries",
                )
            out.append((row[0], row[1]))
            if len(out) > limits.max_entries:
                raise _too_many(limits)
    except csv.Error as exc:
        raise APIError(422, "invalid_glossary_entry", f"line {reader.line_num}: {exc}", param="entries") from None
    return out


def parse_tmx(data: bytes, limits: Limits, source_lang: str = "en", target_lang: str = "de") -> list[tuple[str, str]]:
    """The translation units of a TMX file (1.4b): each unit's ``tuv`` in the source language and in the target
    language (``xml:lang`` or TMX 1.1's ``lang``; ``en-GB`` counts as ``en``) become one entry."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise APIError(422, "invalid_tmx", f"the TMX file is not well-formed XML: {exc}", param="file") from None
    if etree.QName(root).localname != "tmx" or root.find("body") is None:
        raise APIError(422, "invalid_tmx", "not a TMX file: no <tmx> root with a <body>", param="file")
    xml_lang = "{http://www.w3.org/XML/1998/namespace}lang"
    out: list[tuple[str, str]] = []
    for tu in root.find("body").iter("tu"):
        terms: dict[str, str] = {}
        for tuv in tu.iter("tuv"):
            lang = (tuv.get(xml_lang) or tuv.get("lang") or "").lower().split("-")[0].split("_")[0]
            seg = tuv.find("seg")
            if seg is not None and lang and lang not in terms:
                terms[lang] = "".join(seg.itertext())
        if source_lang in terms and target_lang in terms:
            out.append((terms[source_lang], terms[target_lang]))
            if len(out) > limits.max_entries:
                raise _too_many(limits)
    if not out:
        raise APIError(
            422,
            "invalid_tmx",
            f"the TMX file has no unit with both a '{source_lang}' and a '{target_lang}' variant",
            param="file",
        )
    return out


def check_entries(entries: list[tuple[str, str]], limits: Limits) -> list[tuple[str, str]]:
    """Normalise (Unicode NFC) and check every entry; refuse the glossary at the first bad one (422) or when it has
    too many (413) or none."""
    if len(entries) > limits.max_entries:
        raise _too_many(limits)
    if not entries:
        raise APIError(422, "empty_glossary", "the glossary has no entries", param="entries")
    seen: set[str] = set()
    out = []
    for i, (src, tgt) in enumerate(entries, 1):
        for what, term in (("source", src), ("target", tgt)):
            if not term or not term.strip():
                raise APIError(422, "invalid_glossary_entry", f"entry {i}: the {what} term is empty", param="entries")
            if term != term.strip() or _CONTROL.search(term):
                raise APIError(
                    422,
                    "invalid_glossary_entry",
                    f"entry {i}: the {what} term has surrounding whitespace or a control character",
                    param="entries",
                )
            if len(term) > limits.max_term_chars:
                raise APIError(
                    413,
                    "glossary_term_too_long",
                    f"entry {i}: the {what} term has {len(term)} characters; the limit is {limits.max_term_chars}",
                    param="entries",
                )
        src, tgt = unicodedata.normalize("NFC", src), unicodedata.normalize("NFC", tgt)
        if not _WORD.search(src):
            raise APIError(422, "invalid_glossary_entry", f"entry {i}: the source term has no word", param="entries")
        key = src.casefold()
        if key in seen:
            raise APIError(
                422,
                "duplicate_glossary_entry",
                f"entry {i}: the source term {src!r} is in the glossary twice",
                param="entries",
            )
        seen.add(key)
        out.append((src, tgt))
    return out


def digest(entries: Iterable[tuple[str, str]]) -> str:
    """A short digest of the entries' content (order-independent): the glossary's version in signatures."""
    h = hashlib.sha256()
    for s, t in sorted(entries):
        h.update(f"{s}\t{t}\n".encode())
    return h.hexdigest()[:10]


@dataclass(frozen=True)
class Match:
    start: int
    end: int
    source: str  # the glossary's source term
    target: str


def _words(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), m.group().casefold()) for m in _WORD.finditer(text)]


class TermIndex:
    """A glossary's entries by their source terms' words (see the module docstring)."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self.by_words: dict[tuple[str, ...], tuple[str, str]] = {}
        self.longest = 1
        for src, tgt in entries:
            words = tuple(w for _, _, w in _words(src))
            if words:
                self.by_words.setdefault(words, (src, tgt))
                self.longest = max(self.longest, len(words))

    def __len__(self) -> int:
        return len(self.by_words)

    def find(self, text: str) -> list[Match]:
        """The glossary terms in ``text``: whole words, case-insensitive, longest first, not overlapping."""
        words = _words(text)
        out: list[Match] = []
        i = 0
        while i < len(words):
            for n in range(min(self.longest, len(words) - i), 0, -1):
                hit = self.by_words.get(tuple(w for _, _, w in words[i : i + n]))
                if hit is not None:
                    out.append(Match(words[i][0], words[i + n - 1][1], hit[0], hit[1]))
                    i += n
                    break
            else:
                i += 1
        return out

    def pairs(self, text: str) -> tuple[tuple[str, str], ...]:
        """The (source, target) pairs found in ``text``, each once, in order."""
        return tuple(dict.fromkeys((m.source, m.target) for m in self.find(text)))


def iter_masked(text: str, matches: list[Match], first: int) -> Iterator[tuple[str, str]]:
    """(mask, target) for each match masked in ``text`` from ``[PH_<first>]`` on (see ``mask_terms``)."""
    for k, m in enumerate(matches):
        yield f"[PH_{first + k}]", m.target


def mask_terms(text: str, matches: list[Match]) -> tuple[str, dict[str, str]]:
    """``text`` with each matched source term replaced by a placeholder mask numbered after the masks it already
    has, and mask -> target term (put back after translation; the batcher checks the masks like any others)."""
    if not matches:
        return text, {}
    have = [int(n) for n in re.findall(r"\[(?:PH|TAG)_(\d+)\]", text)]
    first = max(have, default=0) + 1
    parts, pos, back = [], 0, {}
    for (mask, target), m in zip(iter_masked(text, matches, first), matches):
        parts += [text[pos : m.start], mask]
        back[mask] = target
        pos = m.end
    parts.append(text[pos:])
    return "".join(parts), back
