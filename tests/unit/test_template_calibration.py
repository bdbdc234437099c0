"""Template calibration (template "auto"): the fastest variant that keeps quality, cached, named in the signature."""

from __future__ import annotations

from batchmt_server.engines.base import Completion, GenerationParams
from batchmt_server.engines.fake import FakeEngine
from batchmt_server.pipeline.calibration import choose_template, load_cached_choice, load_pairs
from batchmt_server.prompting.template import Template
from helpers import running_gateway

NAMES = ["en-de-packed", "en-de-short", "en-de-zero"]
TEMPLATES = {n: Template.load(n) for n in NAMES}
VARIANTS = ",".join(NAMES)  # the engine below knows these three


class PrefixSensitiveEngine(FakeEngine):
    """Slower the longer the prefix (like attention on a CPU: its own clock advances by the prefix length per
    prompt, so timing is exact whatever the machine's load); the zero-shot prompt makes it copy the English
    source, and ``bad_short`` makes the short prompt translate worse."""

    def __init__(self, bad_short: bool = False) -> None:
        super().__init__()
        self.bad_short = bad_short
        self.by_template: dict[str, int] = {}
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    async def generate(self, prompt: str, params: GenerationParams) -> Completion:
        name = next(
            n
            for n, t in TEMPLATES.items()
            if prompt.startswith(t.prefix)
            and not any(len(o.prefix) > len(t.prefix) and prompt.startswith(o.prefix) for o in TEMPLATES.values())
        )
        self.by_template[name] = self.by_template.get(name, 0) + 1
        self.now += len(TEMPLATES[name].prefix) / 1000
        if name == "en-de-zero":
            self.responder = lambda srcs: list(srcs)  # copies of the English
        elif name == "en-de-short" and self.bad_short:
            self.responder = lambda srcs: ["Etwas anderes." for _ in srcs]
        else:
            self.responder = lambda srcs: [f"[de] {s}" for s in srcs]
        return await super().generate(prompt, params)


async def test_the_fastest_variant_that_keeps_quality_is_chosen_and_cached(tmp_path):
    pairs = [(s, f"[de] {s}") for s, _ in load_pairs(None, limit=12)]
    eng = PrefixSensitiveEngine()
    choice = await choose_template(eng, TEMPLATES, pairs, cache_dir=tmp_path, clock=eng.clock)
    by_name = {r.name: r for r in choice.results}
    assert by_name["en-de-zero"].single.copy_rate > 0.9 and not by_name["en-de-zero"].qualifies  # fast but copies
    assert by_name["en-de-short"].qualifies and by_name["en-de-packed"].qualifies
    assert by_name["en-de-short"].single.seconds < by_name["en-de-packed"].single.seconds
    assert choice.chosen == "en-de-short"
    cached = load_cached_choice(tmp_path, eng.model_name, list(TEMPLATES.values()), pairs)
    assert cached is not None and cached.chosen == "en-de-short" and cached.result("en-de-zero").single.copy_rate > 0.9


async def test_a_faster_variant_that_loses_quality_is_not_chosen(tmp_path):
    pairs = [(s, f"[de] {s}") for s, _ in load_pairs(None, limit=12)]
    eng = PrefixSensitiveEngine(bad_short=True)
    choice = await choose_template(eng, TEMPLATES, pairs, clock=eng.clock)
    assert not choice.result("en-de-short").qualifies
    assert choice.chosen == "en-de-packed"


async def test_the_gateway_serves_with_the_chosen_template_and_says_so(tmp_path):
    eng = PrefixSensitiveEngine()
    # the choice on the packaged calibration set, timed on the engine's own clock, cached where the gateway looks
    await choose_template(eng, TEMPLATES, load_pairs(None), cache_dir=tmp_path, clock=eng.clock)
    measured = dict(eng.by_template)
    async with running_gateway(
        eng, calibration="auto", template="auto", template_variants=VARIANTS, cache_dir=tmp_path
    ) as (c, app):
        info = (await c.get("/v1/info")).json()
        short = TEMPLATES["en-de-short"].ref
        assert info["template"] == short and f"tmpl:{short}|" in info["signature"]
        assert info["template_variants"] == NAMES
        before = eng.by_template.get("en-de-short", 0)
        r = await c.post("/v1/translate", json={"sentences": ["The library opens at nine tomorrow."]})
        assert (
            r.status_code == 200 and r.json()["translations"][0]["text"] == "[de] The library opens at nine tomorrow."
        )
        assert eng.by_template["en-de-short"] == before + 1  # the request went out with the short prompt
    # the gateway read the choice from the cache: the other variants were not measured again
    assert {n: eng.by_template[n] for n in ("en-de-packed", "en-de-zero")} == {
        n: measured[n] for n in ("en-de-packed", "en-de-zero")
    }
    eng2 = PrefixSensitiveEngine()
    async with running_gateway(
        eng2, calibration="auto", template="auto", template_variants=VARIANTS, cache_dir=tmp_path
    ) as (c, app):
        assert (await c.get("/v1/info")).json()["template"] == TEMPLATES["en-de-short"].ref
        assert set(eng2.by_template) <= {"en-de-short"}


async def test_a_set_template_is_used_as_is(tmp_path):
    async with running_gateway(
        PrefixSensitiveEngine(), calibration="auto", template="en-de-packed", cache_dir=tmp_path
    ) as (c, app):
        info = (await c.get("/v1/info")).json()
        assert info["template"] == TEMPLATES["en-de-packed"].ref and info["template_variants"] == []


def noisy_engine(pairs) -> PrefixSensitiveEngine:
    """The short prompt's first pass over ``pairs`` is slowed down (another process on the machine); later passes
    are not."""
    eng = PrefixSensitiveEngine()
    generate = eng.generate
    short, packed = TEMPLATES["en-de-short"], TEMPLATES["en-de-packed"]

    async def noisy(prompt, params):
        out = await generate(prompt, params)
        is_short = prompt.startswith(short.prefix) and not prompt.startswith(packed.prefix)
        if is_short and eng.by_template["en-de-short"] <= len(pairs) + 1:  # the warm-up prompt and the first pass
            eng.now += 10.0
        return out

    eng.generate = noisy  # type: ignore[method-assign]
    return eng


async def test_qualifying_variants_are_compared_by_their_median_time():
    """One noisy pass does not decide: the short prompt is chosen on its median of three passes."""
    pairs = [(s, f"[de] {s}") for s, _ in load_pairs(None, limit=8)]
    two = {n: TEMPLATES[n] for n in ("en-de-packed", "en-de-short")}
    eng = noisy_engine(pairs)
    choice = await choose_template(eng, two, pairs, clock=eng.clock)
    short = choice.result("en-de-short")
    assert len(short.timings) == 3 and short.timings[0] > max(short.timings[1:])
    assert choice.chosen == "en-de-short"
    eng = noisy_engine(pairs)  # one pass only: the noise decides
    assert (await choose_template(eng, two, pairs, clock=eng.clock, retime=0)).chosen == "en-de-packed"


async def test_of_equally_fast_variants_the_shorter_prompt_wins(monkeypatch):
    """Median times within TIE of the fastest are a tie: the shortest prompt wins (at full load it is the
    difference); a clearly faster variant still wins over a shorter one."""
    from batchmt_server.pipeline import calibration

    pairs = [(s, f"[de] {s}") for s, _ in load_pairs(None, limit=8)]
    two = {n: TEMPLATES[n] for n in ("en-de-packed", "en-de-short")}
    eng = PrefixSensitiveEngine()
    generate = eng.generate

    async def slower_short(prompt, params):  # the short prompt takes 5% longer than the long one
        before = eng.now
        out = await generate(prompt, params)
        long = prompt.startswith(TEMPLATES["en-de-packed"].prefix)
        eng.now = before + (1.0 if long else 1.05)
        return out

    eng.generate = slower_short  # type: ignore[method-assign]
    choice = await choose_template(eng, two, pairs, clock=eng.clock)
    assert choice.result("en-de-short").prompt_chars < choice.result("en-de-packed").prompt_chars
    assert choice.chosen == "en-de-short"
    monkeypatch.setattr(calibration, "TIE", 0.0)  # no tie: the 5% faster long prompt wins
    assert (await choose_template(eng, two, pairs, clock=eng.clock)).chosen == "en-de-packed"


def test_a_pack_size_qualifies_on_quality_re_sends_and_billed_tokens():
    from batchmt_server.pipeline.calibration import SizeResult, packs_well

    single = SizeResult(1, chrf=34.0, bleu=8, parse_failure_rate=0.0, copy_rate=0.03, seconds=9, billed_tokens=98.0)

    def pack(chrf=33.5, failures=0.1, billed=60.0):
        return SizeResult(4, chrf, 8, failures, 0.03, 12, billed)

    assert packs_well(pack(), single, 1.0, 0.25)  # re-sends repaired and paid for: still cheaper, same quality
    assert not packs_well(pack(chrf=32.9), single, 1.0, 0.25)  # quality
    assert not packs_well(pack(failures=0.3), single, 1.0, 0.25)  # too many sentences wait for a re-send
    assert not packs_well(pack(billed=99.0), single, 1.0, 0.25)  # the re-sends cost more than packing saves
    assert packs_well(pack(billed=0.0), single, 1.0, 0.25)  # a cached result from before billed tokens
