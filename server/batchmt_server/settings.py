"""One typed settings object, read from ``BATCHMT_*`` environment variables and CLI flags."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .auth.security_settings import SecurityFields

__all__ = ["EMBEDDED_MODEL", "NON_SETTING_VARIABLES", "Settings", "unknown_variables"]

#: ``--model`` value that selects the embedded default model (Gemma-3-270M from a PyPI package).
EMBEDDED_MODEL = "embedded"


class Settings(BaseSettings, SecurityFields):
    """Every knob of the gateway. Validated once at start-up. The HTTP front's settings (keys, limits before
    parsing, timeouts, logs, tracing) are in :class:`~batchmt_server.auth.security_settings.SecurityFields`."""

    model_config = SettingsConfigDict(env_prefix="BATCHMT_", extra="ignore", validate_assignment=True)

    # --- HTTP server
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    admin_key: str | None = Field(
        None,
        description="the server's admin key (env BATCHMT_ADMIN_KEY): if set, requests need "
        "'Authorization: Bearer <key>' of a known key",
    )
    api_key: str | None = Field(
        None,
        description="the SDK's key; as the server's admin key it is the older name of BATCHMT_ADMIN_KEY "
        "(honoured with a warning)",
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # --- engine
    engine: Literal["vllm", "http", "fake"] = Field(
        "vllm",
        description="'vllm' runs the model in-process; 'http' talks to --engine-url; "
        "'fake' is an echo engine for development only",
    )
    model: str = Field(
        EMBEDDED_MODEL,
        description="'embedded' (Gemma-3-270M), 'smollm2' (SmolLM2-135M-Instruct), "
        "a Hugging Face folder, or a model id",
    )
    preset: str | None = Field(
        None,
        description="model preset (presets.py: gemma-270m, smollm2, llama-8b, llama-70b, "
        "falcon3-10b, falcon-180b): model, prompt form and vLLM engine arguments; explicit "
        "settings win",
    )
    template_form: Literal["auto", "completion", "chat"] = Field(
        "auto",
        description="'chat' renders prompts through the tokenizer's chat template (instruct models); "
        "'completion' as plain text (base models); 'auto': chat when the model has a chat template",
    )
    tokenizer: str | None = Field(
        None,
        description="HTTP engine: tokenizer folder or id whose chat template renders "
        "the prompts (default: --model when it is set to an embedded model or a folder)",
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description="more vLLM engine arguments (AsyncEngineArgs fields), e.g. "
        "--engine-arg load_format=dummy (repeatable; values as JSON when they parse); BATCHMT_ENGINE_ARGS is a "
        "JSON object; they win over a preset's",
    )
    served_model_name: str | None = Field(None, description="name reported in responses and sent to an HTTP engine")
    engine_url: str | None = Field(
        None,
        description="OpenAI-compatible server, e.g. http://127.0.0.1:8001; several "
        "(comma-separated, or the flag repeated) make a pool of replicas",
    )
    engine_api_key: str | None = None
    engine_timeout_s: float = Field(300.0, gt=0)
    cache_dir: Path = Field(Path.home() / ".cache" / "batchmt", description="where the converted embedded model lives")
    dtype: str = Field(
        "auto", description="'auto' is float32 on the CPU (no native bf16 here), the model's dtype on a GPU"
    )
    block_size: int | None = Field(
        None, description="KV block size; default 32 on the CPU so the few-shot prefix fills whole, cacheable blocks"
    )
    max_model_len: int = Field(2048, ge=256)
    max_num_seqs: int = Field(128, ge=1)
    enforce_eager: bool = Field(
        False, description="skip graph compilation: starts in ~30 s instead of ~2 min, decodes ~30% slower"
    )
    enable_prefix_caching: bool = True
    cpu_kvcache_gib: int = Field(4, ge=1, description="VLLM_CPU_KVCACHE_SPACE for the CPU engine")
    cpu_preload: bool = Field(
        True,
        description="CPU engine: put tcmalloc (apt libtcmalloc-minimal4) and Intel OpenMP (libiomp5, a vllm-cpu "
        "dependency) in the engine processes' LD_PRELOAD, as vLLM-CPU recommends; only those found, only when "
        "LD_PRELOAD has no allocator / OpenMP runtime of its own",
    )
    warmup: bool = Field(
        True, description="send one prompt at start-up so the prefix is cached before the first caller"
    )

    # --- prompts and generation
    prompts_dir: Path | None = Field(None, description="folder of prompt templates; default: the packaged prompts/")
    template: str = Field(
        "auto",
        description="prompt template (a file in prompts/), or 'auto': calibration picks the "
        "fastest of --template-variants that keeps quality (without calibration: the first one)",
    )
    template_variants: str = Field(
        "en-de-packed,en-de-short,en-de-zero,en-de-list",
        description="template 'auto' chooses among these (comma-separated, the first is the fallback); by default "
        "a self-trained model's own template (named in its card) comes first",
    )
    max_copy_increase: float = Field(
        0.05,
        ge=0,
        le=1,
        description="template calibration: share of English copies a variant may add over the variant with the fewest",
    )
    temperature: float = Field(0.0, ge=0.0, le=2.0)

    # --- micro-batcher
    max_wait_ms: float = Field(5.0, ge=0.0, description="batch window, from the first queued sentence")
    max_sentences_per_prompt: int = Field(8, ge=1, le=64)
    pack_policy: Literal["adaptive", "fixed"] = Field(
        "adaptive",
        description="'adaptive': one sentence per prompt while prompt slots are free, packing only as the "
        "queue deepens; 'fixed': always pack up to max_sentences_per_prompt",
    )
    calibration: Literal["auto", "off"] = Field(
        "auto",
        description="'auto': measure (once per model and template, cached) how far packing keeps quality, and "
        "never pack beyond it; 'off': trust max_sentences_per_prompt",
    )
    calibration_data: Path | None = Field(
        None,
        description="calibration pairs: a .tsv or a folder with src.en/ref.de "
        "(default: the packaged prompts/calibration/en-de.tsv)",
    )
    max_chrf_drop: float = Field(1.0, ge=0, description="calibration: chrF points a pack size may lose against single")
    max_parse_failure: float = Field(
        0.25,
        ge=0,
        le=1,
        description="calibration: share of sentences a pack size may re-send alone after a bad slot (a re-send "
        "repairs its slot; its tokens count against the pack size in the billed-tokens comparison)",
    )
    max_prompt_tokens: int = Field(1024, ge=64, description="token budget for the numbered inputs of one prompt")
    max_prompts_in_flight: int | None = Field(
        None,
        ge=1,
        description="prompts the gateway keeps at the engine at once; default: twice the in-process engine's "
        "max_num_seqs, so that vLLM's scheduler has the next prompts waiting when a sequence ends "
        "(64 for an HTTP engine)",
    )
    max_queue_sentences: int = Field(4096, ge=1, description="bounded queue; beyond it requests get 429")
    cross_tenant_packing: bool = Field(
        False,
        description="sentences of different API keys may share a prompt (more sentences per prompt when many keys "
        "send a few each); off: a prompt holds one key's sentences only. Keys never share coalescing or memory",
    )
    glossary_max_entries: int = Field(10_000, ge=1, description="entries per glossary (413 glossary_too_large beyond)")
    glossary_max_term_chars: int = Field(200, ge=1, description="characters per glossary term (413 beyond)")
    glossary_max_per_key: int = Field(
        100, ge=1, description="glossaries one key keeps (409 too_many_glossaries beyond)"
    )
    glossary_method: Literal["hints", "mask", "check"] = Field(
        "mask",
        description="how a request's glossary terms are enforced: 'hints' (term pairs in the per-sentence part of "
        "the prompt), 'mask' (source terms masked, target terms put back), 'check' (none; only the check after "
        "generation). Every method re-sends a segment missing a term once, then marks it suspect "
        "(results/glossary/)",
    )
    translation_memory_size: int = Field(
        10000,
        ge=0,
        description="sentences whose translations are remembered in "
        "the store, across restarts (LRU); 0 turns the memory off",
    )
    memory_max_human_entries: int = Field(
        100_000,
        ge=1,
        description="imported human translations a key's memory holds (POST /v1/memory/import; never evicted; "
        "413 beyond)",
    )
    memory_import_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1, description="largest translation memory import (TMX or TSV; 413 beyond)"
    )

    # --- durable store, batch jobs (jobs/, stores/)
    data_dir: Path | None = Field(
        None,
        description="folder of the embedded store (SQLite): batch jobs, files, "
        "translation memory (default: <cache-dir>/data)",
    )
    database_url: str | None = Field(
        None, description="store URL: sqlite:///path (default: <data-dir>/batchmt.sqlite3) or postgresql://..."
    )
    job_max_file_bytes: int = Field(100 * 1024 * 1024, ge=1, description="largest batch input file (413 beyond)")
    job_max_requests: int = Field(50_000, ge=1, description="request lines per batch (413 beyond)")
    file_retention_s: int = Field(
        30 * 86400,
        ge=0,
        description="uploaded files expire this long after upload unless the upload's expires_after says "
        "otherwise (OpenAI's default for batch files); 0: kept until deleted",
    )
    max_storage_bytes_per_key: int = Field(
        1024**3, ge=1, description="bytes of uploaded files one key may keep (413 storage_limit_exceeded beyond)"
    )
    min_free_disk_bytes: int = Field(
        64 * 1024**2,
        ge=0,
        description="an upload that would leave less free space on the data directory's disk is refused "
        "(507 storage_full), and /readyz says not ready below it",
    )
    retention_sweep_s: float = Field(300.0, gt=0, description="how often expired files are deleted")
    job_lease_s: float = Field(
        60.0,
        gt=0,
        description="a claimed job line is taken over by another worker after this "
        "long without a heartbeat (a dead gateway's lines)",
    )
    job_max_lines_in_flight: int = Field(
        64,
        ge=1,
        description="job lines in flight at most (and 1024 texts); the cap "
        "halves while interactive sentences wait and grows back by one line every "
        "0.5 s",
    )
    job_drain_s: float = Field(
        5.0,
        ge=0,
        description="on shutdown, how long job lines in flight may finish before they are given back to the store",
    )
    job_worker: bool = Field(True, description="run batch jobs in this process (off: this gateway only serves the API)")
    scheduling_policy: Literal["auto", "priority", "fcfs"] = Field(
        "auto",
        description="engine scheduling: 'priority' runs interactive prompts before batch-job prompts (vLLM's "
        "priority scheduling; an HTTP engine must be started with --scheduling-policy priority); 'fcfs' sends no "
        "priorities; 'auto' is 'priority' for the in-process engine and 'fcfs' for an HTTP engine",
    )
    suspect_second_try: bool = Field(
        False,
        description="quality 'fast': give a one-sentence translation that copies "
        "the source, loops or runs on a sampled second try before delivering it as "
        "'suspect' (fewer copies, more engine work: see the benchmark)",
    )
    loop_stop: bool = Field(
        True,
        description="in-process engine: end a completion once it repeats one block of tokens ~24 tokens long "
        "(a degenerate loop, decoded to the token budget otherwise; flagged like a truncated slot)",
    )
    max_attempts: int = Field(
        2, ge=1, le=5, description="engine calls per sentence at one-per-prompt before it is reported failed"
    )

    # --- ensembles: requests with quality "balanced" / "best" (BatchPrompt's BPE + SEAS, ensemble.py)
    ensemble_rounds_balanced: int = Field(3, ge=1, le=9, description="rounds (odd) for quality 'balanced'")
    ensemble_rounds_best: int = Field(5, ge=1, le=9, description="rounds (odd) for quality 'best'")
    ensemble_pack: int | None = Field(
        None,
        ge=1,
        le=64,
        description="sentences per prompt in ensemble rounds "
        "(default: the one-pass pack size, i.e. the calibrated limit; set it to pack "
        "beyond that and let the vote recover what packing loses)",
    )
    ensemble_early_stopping: bool = Field(
        True, description="a sentence leaves the rounds once two consecutive rounds agree with high confidence"
    )
    ensemble_agreement: float = Field(
        75.0, ge=0.0, le=100.0, description="early stopping: symmetric sentence chrF two consecutive rounds must reach"
    )
    ensemble_confidence: float = Field(
        -0.35, le=0.0, description="early stopping: mean token log-probability both rounds' translations must reach"
    )
    ensemble_temperature: float = Field(
        0.7,
        ge=0.0,
        le=2.0,
        description="sampling temperature for one-sentence prompts after round 1 (greedy would repeat itself)",
    )
    ensemble_weighted: bool = Field(True, description="weight each candidate's vote by the model's confidence in it")
    ensemble_seed: int = Field(0, description="seed of the permutations and samples (with the request's sentences)")

    # --- request limits
    max_sentences_per_request: int = Field(128, ge=1)
    max_sentence_chars: int = Field(
        1000,
        ge=20,
        description="longest segment sent to the engine: a longer one (a "
        "sentence without punctuation) is cut at clause or space boundaries, never refused",
    )
    max_text_chars: int = Field(100_000, ge=1, description="longest entry (text) of a request (413 beyond)")
    max_request_chars: int = Field(1_000_000, ge=1, description="characters over all entries of a request (413 beyond)")
    request_timeout_s: float = Field(600.0, gt=0)

    # --- cost accounting (see cost.py; both models add up, leave the unused one at 0)
    currency: str = Field("USD", description="currency the prices below are in (reported with every cost)")
    price_prompt_per_mtok: float = Field(0.0, ge=0.0, description="price per 1M uncached prompt tokens")
    price_cached_prompt_per_mtok: float = Field(
        0.0, ge=0.0, description="price per 1M prompt tokens served from the prefix cache"
    )
    price_completion_per_mtok: float = Field(0.0, ge=0.0, description="price per 1M completion tokens")
    price_engine_hour: float = Field(
        0.0,
        ge=0.0,
        description="price per engine-hour (self-hosted GPU), charged for "
        "engine busy time: seconds with at least one prompt in flight",
    )

    @field_validator("ensemble_rounds_balanced", "ensemble_rounds_best")
    @classmethod
    def _odd_rounds(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError(f"ensemble rounds must be odd (1, 3, 5, 7, 9), not {v}")
        return v

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        """A preset fills the settings it names that were not given explicitly (flags and variables win)."""
        if isinstance(data, dict) and data.get("preset"):
            from .models.presets import get_preset, preset_settings

            for key, value in preset_settings(get_preset(data["preset"])).items():
                if data.get(key) is None:
                    data[key] = value
        return data

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if self.engine == "http" and not self.engine_url:
            raise ValueError("engine 'http' needs engine_url (--engine-url / BATCHMT_ENGINE_URL)")
        if self.engine_url and self.engine == "vllm":
            # Giving an engine URL is how a user asks for the HTTP engine.
            object.__setattr__(self, "engine", "http")
        return self

    @property
    def variant_names(self) -> list[str]:
        """``--template-variants`` as configured, in its order (the first is the long few-shot prompt by default)."""
        names = [n.strip() for n in self.template_variants.split(",") if n.strip()]
        if not names:
            raise ValueError("template_variants is empty")
        return names

    @property
    def template_names(self) -> list[str]:
        """The templates this gateway may use: the one set, or the variants 'auto' chooses among. With the default
        variants, a self-trained model's own template (its card's) comes first: the fallback without calibration.
        The model is ``--model``: the in-process engine's, or for an HTTP engine only when it was set (as for the
        tokenizer: the gateway cannot know what a remote server serves)."""
        if self.template != "auto":
            return [self.template]
        names = self.variant_names
        served = self.engine == "vllm" or (self.engine == "http" and "model" in self.model_fields_set)
        if served and "template_variants" not in self.model_fields_set:
            from .models.embedded import trained_template

            own = trained_template(self.model)
            if own is not None:
                names = [own] + [n for n in names if n != own]
        return names

    @property
    def model_name(self) -> str:
        """Short name reported to callers and put in signatures."""
        if self.served_model_name:
            return self.served_model_name
        from .models.embedded import embedded_model

        embedded = embedded_model(self.model)
        if embedded is not None:
            return embedded.versioned_name()
        return Path(self.model.rstrip("/")).name or self.model


#: ``BATCHMT_*`` variables that are not server settings: the SDK's (``batchmt``), the dashboard tests'; every
#: ``BATCHMT_TEST_*`` belongs to the test suite
NON_SETTING_VARIABLES = frozenset({"BATCHMT_BASE_URL", "BATCHMT_DASHBOARD_GATEWAY"})


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per ``BATCHMT_*`` variable that is no setting (a typo would otherwise pass silently), naming
    the closest setting."""
    import difflib

    known = {"BATCHMT_" + name.upper() for name in Settings.model_fields}
    messages = []
    for var in sorted(environ):
        if not var.upper().startswith("BATCHMT_") or var.upper() in known | NON_SETTING_VARIABLES:
            continue
        if var.upper().startswith("BATCHMT_TEST_"):
            continue
        # compared without the common prefix, which would make every name look alike
        close = difflib.get_close_matches(var.upper()[8:], sorted(k[8:] for k in known), n=1, cutoff=0.7)
        hint = f"did you mean BATCHMT_{close[0]}?" if close else "no setting has a similar name"
        messages.append(f"{var} is not a setting ({hint}); every setting: batchmt-server --help")
    return messages
