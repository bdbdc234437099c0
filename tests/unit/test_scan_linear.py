"""Every scanner that sees user text runs in time linear in it (issue 24, D1).

Each scanner is timed on adversarial inputs of 10k and 100k characters; the test fails when the 100k run takes
more than ``MAX_RATIO`` (30) times the 10k run (linear: ~10-20; quadratic: ~100). A ratio, not a wall-clock threshold,
so a slow or busy machine does not fail it. Each timing is the median of a few repeats, and a short run is
repeated in a loop until it lasts long enough to be measured.

Before the fix: ``find_spans("a" * 100_000)`` took 11.9 s (10k: 0.12 s, ratio 100), ``"%" + "0" * 10_000``
3.5 s, ``segment_text`` of 25k placeholders 13 s (ratio 70).
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from collections.abc import Callable

import pytest

from batchmt_server.http.middleware import json_depth_exceeds
from batchmt_server.jobs.serving import validate_lines
from batchmt_server.prompting.parsing import parse_completion
from batchmt_server.settings import Settings
from batchmt_server.text.documents import prepare
from batchmt_server.text.markup import parse_markup
from batchmt_server.text.placeholders import find_spans, protect
from batchmt_server.text.segmenter import segment_text

#: linear work gives ~10-20 (caches, allocation, a busy machine); quadratic ~100
MAX_RATIO = 30.0


def _per_call(fn: Callable[[str], object], text: str, min_s: float = 0.03) -> float:
    """Seconds per call, the call repeated until the loop lasts ``min_s`` (a sub-millisecond call is noise)."""
    n, elapsed = 0, 0.0
    gc.collect()
    gc.disable()  # the collector's passes grow with live objects: noise, not the scanner's own growth
    try:
        t0 = time.perf_counter()
        while elapsed < min_s:
            fn(text)
            n += 1
            elapsed = time.perf_counter() - t0
            if elapsed > 2.0:  # one call this slow is already the answer
                break
    finally:
        gc.enable()
    return elapsed / n


def _ratio(fn: Callable[[str], object], make: Callable[[int], str]) -> tuple[float, float, float]:
    """Seconds per call at 10k and at 100k characters (medians of alternating repeats: 3, or 5 when the first 3
    say super-linear, as a busy machine's hiccup can), and their ratio."""
    small, large = make(10_000), make(100_000)
    assert 9_000 <= len(small) <= 11_000 and 90_000 <= len(large) <= 110_000
    fn(small)  # warm caches (the sentence model, compiled patterns)
    smalls: list[float] = []
    larges: list[float] = []
    for i in range(5):
        smalls.append(_per_call(fn, small))
        larges.append(_per_call(fn, large))
        if larges[-1] > 1.0 and larges[-1] / smalls[-1] > 3 * MAX_RATIO:  # quadratic for sure: no minute proving it
            break
        if i >= 2 and statistics.median(larges) / statistics.median(smalls) < MAX_RATIO:
            break
    a, b = statistics.median(smalls), statistics.median(larges)
    return a, b, b / a


# adversarial texts: long runs a pattern may retry at every offset, and many spans a scan may compare pairwise
INPUTS: dict[str, Callable[[int], str]] = {
    "email_run": lambda n: "a" * n,  # e-mail local part: was retried at every offset
    "email_dots": lambda n: "www." + "." * (n - 4),
    "email_at": lambda n: ("a@" * n)[:n],
    "email_domain": lambda n: "x@" + "b." * ((n - 2) // 2),
    "printf_zeros": lambda n: "%" + "0" * (n - 1),  # "[-+#0]*" next to "\d+": every split of the run
    "printf_paren": lambda n: "%(" + "a" * (n - 2),
    "url_tail": lambda n: "http://" + "," * (n - 7),
    "code_open": lambda n: "`" + "b" * (n - 1),
    "tag_open": lambda n: "[" + "A" * (n - 1),
    "brace_spans": lambda n: ("{a} " * n)[:n],  # a placeholder every 4 characters: pairwise span checks
    "sentences": lambda n: ("Ab. " * n)[:n],
    "no_space": lambda n: "x" * n,
    "tabs": lambda n: ("a\t" * n)[:n],
    "newlines": lambda n: ("a\n" * n)[:n],
    "bullets": lambda n: ("- " * n)[:n],
}

SCANNERS: dict[str, Callable[[str], object]] = {
    "find_spans": find_spans,
    "protect": protect,
    "segment_off": lambda t: segment_text(t, "off", 1000, find_spans(t)),
    "prepare_text": lambda t: prepare(t, "on", 1000, True, None),
}


@pytest.mark.parametrize("scanner", list(SCANNERS))
@pytest.mark.parametrize("name", list(INPUTS))
def test_text_scanners_are_linear(scanner: str, name: str) -> None:
    a, b, ratio = _ratio(SCANNERS[scanner], INPUTS[name])
    assert ratio < MAX_RATIO, f"{scanner} on {name}: 10k {a * 1e3:.2f} ms, 100k {b * 1e3:.2f} ms, ratio {ratio:.0f}"


MARKUP_INPUTS: dict[str, Callable[[int], str]] = {
    "inline_tags": lambda n: "<p>" + "<b>x</b> " * ((n - 7) // 9) + "</p>",  # a marker every few characters
    "literal_prefixes": lambda n: ("<p>" + "".join(f"[TAG{i}_ " for i in range(n // 8)))[: n - 4] + "</p>",
    "email_run": lambda n: "<p>" + "a" * (n - 7) + "</p>",
    "placeholders": lambda n: "<p>" + "{a} <i>b</i> " * ((n - 7) // 13) + "</p>",
}


@pytest.mark.parametrize("name", list(MARKUP_INPUTS))
def test_markup_scanners_are_linear(name: str) -> None:
    for label, fn in {
        "parse_markup": lambda t: parse_markup(t, "html"),
        "prepare_html": lambda t: prepare(t, "on", 1000, True, "html"),
    }.items():
        a, b, ratio = _ratio(fn, MARKUP_INPUTS[name])
        assert ratio < MAX_RATIO, f"{label} on {name}: 10k {a * 1e3:.2f} ms, 100k {b * 1e3:.2f} ms, ratio {ratio:.0f}"


def _jsonl(n: int, body_text: str = "x") -> bytes:
    line = json.dumps(
        {"custom_id": "c", "method": "POST", "url": "/v1/translate", "body": {"texts": [body_text]}}, ensure_ascii=False
    )
    lines = [line.replace('"c"', f'"c{i}"') for i in range(max(1, n // (len(line) + 6)))]
    return "\n".join(lines).encode()


JSONL_INPUTS: dict[str, Callable[[int], bytes]] = {
    "many_lines": _jsonl,
    "blank_lines": lambda n: b"\n" * n,
    "separators": lambda n: ("\u2028" * (n // 3)).encode(),  # line separators inside no line
    "one_long_text": lambda n: _jsonl(n, "a" * (n - 120)),
}


@pytest.mark.parametrize("name", list(JSONL_INPUTS))
def test_jsonl_reader_is_linear(name: str) -> None:
    settings = Settings(max_text_chars=200_000, max_request_chars=200_000)
    make = JSONL_INPUTS[name]
    a, b, ratio = _ratio(lambda t: validate_lines(make(len(t)), settings), lambda n: "x" * n)
    assert ratio < MAX_RATIO, f"validate_lines on {name}: 10k {a * 1e3:.2f} ms, 100k {b * 1e3:.2f} ms"


JSON_BODIES: dict[str, Callable[[int], bytes]] = {
    "open_brackets": lambda n: b"[" * n,
    "open_string": lambda n: b'"' + b"\\a" * (n // 2),
    "nested_pairs": lambda n: b"[{" * (n // 4) + b"}]" * (n // 4),
}


@pytest.mark.parametrize("name", list(JSON_BODIES))
def test_json_depth_check_is_linear(name: str) -> None:
    make = JSON_BODIES[name]
    a, b, ratio = _ratio(lambda t: json_depth_exceeds(make(len(t)), 16), lambda n: "x" * n)
    assert ratio < MAX_RATIO, f"json_depth_exceeds on {name}: 10k {a * 1e3:.2f} ms, 100k {b * 1e3:.2f} ms"


def test_completion_parser_is_linear() -> None:
    """The engine's completion echoes user text: long lines parse in linear time. (Fuzzy echo matching compares
    segments, which the segmenter caps at ``max_sentence_chars``: bounded, not timed here.)"""

    def run(t: str) -> object:
        return parse_completion(f" {t}\nEnglish 2: {t} b\nGerman 2: {t}\n   \t  {t}", [t, t + " b"])

    a, b, ratio = _ratio(run, lambda n: "a " * (n // 2))
    assert ratio < MAX_RATIO, f"parse_completion: 10k {a * 1e3:.2f} ms, 100k {b * 1e3:.2f} ms, ratio {ratio:.0f}"


async def test_a_short_request_is_not_stalled_by_a_long_text_being_prepared() -> None:
    """A 100k-character text being cut and scanned must not stall another caller's one-sentence request
    (before the fix, ``{"texts": ["a" * 100000]}`` held the interpreter for 12 s, and every other request with it)."""
    import asyncio

    from helpers import running_gateway

    async with running_gateway() as (client, _app):
        big = asyncio.ensure_future(client.post("/v1/translate", json={"texts": ["a" * 99_990 + " b@c.d"]}))
        latencies: list[float] = []
        while not big.done() or len(latencies) < 5:  # one-sentence requests, one after another, all along
            t0 = time.perf_counter()  # from the moment the caller wants to send (a stalled loop stalls the sleep too)
            await asyncio.sleep(0.01)
            r = await client.post("/v1/translate", json={"texts": ["A short sentence."]})
            latencies.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        r = await big
        assert r.status_code == 200, r.text
        assert max(latencies) < 2.0, f"one-sentence latencies while a 100k text was prepared: {latencies}"
