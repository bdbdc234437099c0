"""Chat form of the BatchPrompt template, rendered by real Hugging Face tokenizers' chat templates.

The tokenizer is a real ``PreTrainedTokenizerFast`` built here (byte-level, no download); the chat templates are
written here in the shapes real instruct models use (ChatML like SmolLM2/Qwen, a BOS-writing one like Llama 3, a
Gemma-like one that refuses a system turn).
"""

from __future__ import annotations

import pytest

from batchmt_server.engines.base import GenerationParams
from batchmt_server.engines.fake import FakeEngine
from batchmt_server.prompting.chat import ChatFormError, ChatTemplate, apply_form, resolve_form
from batchmt_server.prompting.template import Template

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Llama-3 shape: the template writes the BOS token itself
BOS_WRITING = (
    "{{ bos_token }}{% for m in messages %}{{ '<|start_header_id|>' + m['role'] + '<|end_header_id|>\n\n'"
    " + m['content'] | trim + '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
NO_SYSTEM = (
    "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{{ '<start_of_turn>' + m['role'] + '\n' + m['content'] + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
# a template that rewrites the user's text: the prefix could not be guaranteed byte-identical
REWRITING = (
    "{% for m in messages %}{{ m['role'] + ': ' + m['content'].replace('1.', 'one.') + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def byte_tokenizer(add_bos: bool = False):
    """A real fast tokenizer over bytes (every byte a token), with ``<s>``/``</s>``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tk = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    if add_bos:
        tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def tokenizer_factory():
    plain, with_bos = byte_tokenizer(), byte_tokenizer(add_bos=True)

    def make(chat_template: str | None, add_bos: bool = False):
        tok = with_bos if add_bos else plain
        tok.chat_template = chat_template
        return tok

    return make


@pytest.fixture(scope="module")
def base() -> Template:
    return Template.load("en-de-packed")


def test_base_models_keep_the_completion_form(tokenizer_factory, base: Template) -> None:
    tok = tokenizer_factory(None)
    assert resolve_form("auto", tok) == "completion"
    assert apply_form(base, "auto", tok) is base
    with pytest.raises(ChatFormError, match="has none"):
        apply_form(base, "chat", tok, "gemma")


def test_chatml_turns_and_prefill(tokenizer_factory, base: Template) -> None:
    tok = tokenizer_factory(CHATML)
    chat = apply_form(base, "auto", tok)
    assert isinstance(chat, ChatTemplate) and chat.form == "chat" and chat.system_turn
    prompt = chat.render(["The cat sleeps.", "It is raining."])
    assert prompt.startswith("<|im_start|>system\n" + base.instruction + "<|im_end|>\n<|im_start|>user\nSentences:\n")
    assert prompt.endswith(
        "<|im_start|>user\nSentences:\n1. The cat sleeps.\n2. It is raining.\nTranslations:"
        "<|im_end|>\n"
        "<|im_start|>assistant\nEnglish 1: The cat sleeps.\nGerman 1:"
    )
    # one user/assistant pair per example batch, then the query's user turn
    assert prompt.count("<|im_start|>assistant\n") == len(base.examples) + 1
    assert "German 1: Die Bäckerei an der Ecke öffnet um sechs Uhr morgens.\nEnglish 2:" in chat.prefix
    # the prompt equals the tokenizer's own rendering with the assistant turn continued
    msgs = [{"role": "system", "content": base.instruction}]
    for ex in base.examples:
        msgs.append(
            {
                "role": "user",
                "content": "\n".join(
                    ["Sentences:"] + [f"{i}. {s}" for i, (s, _) in enumerate(ex, 1)] + ["Translations:"]
                ),
            }
        )
        msgs.append(
            {
                "role": "assistant",
                "content": "\n".join(f"English {i}: {s}\nGerman {i}: {t}" for i, (s, t) in enumerate(ex, 1)),
            }
        )
    msgs.append({"role": "user", "content": "Sentences:\n1. The cat sleeps.\n2. It is raining.\nTranslations:"})
    rendered = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert prompt == rendered + "English 1: The cat sleeps.\nGerman 1:"


def test_prefix_is_byte_identical_and_names_the_form(tokenizer_factory, base: Template) -> None:
    chat = apply_form(base, "chat", tokenizer_factory(CHATML))
    prompts = [chat.render(s) for s in (["A."], ["B.", "C."], ["A dog.", "x", "y"])]
    assert all(p.startswith(chat.prefix) for p in prompts)
    assert chat.ref.startswith(base.ref + "/chat+") and chat.ref != base.ref
    # another chat template, another ref (calibration is cached per ref)
    assert apply_form(base, "chat", tokenizer_factory(NO_SYSTEM)).ref != chat.ref


def test_parser_reads_the_assistant_continuation(tokenizer_factory, base: Template) -> None:
    chat = apply_form(base, "chat", tokenizer_factory(CHATML))
    sources = ["The cat sleeps.", "It is raining."]
    completion = " Die Katze schläft.\nEnglish 2: It is raining.\nGerman 2: Es regnet."
    slots = chat.parse(completion, sources, "stop")
    assert [s.text for s in slots] == ["Die Katze schläft.", "Es regnet."]
    assert chat.stop_for(2) == base.stop_for(2) and chat.max_tokens([5, 5]) == base.max_tokens([5, 5])


def test_bos_written_by_the_template_is_not_doubled(tokenizer_factory, base: Template) -> None:
    tok = tokenizer_factory(BOS_WRITING, add_bos=True)
    assert tok.encode("a")[0] == tok.bos_token_id
    chat = apply_form(base, "chat", tok)
    prompt = chat.render(["Hello."])
    assert not prompt.startswith(tok.bos_token) and prompt.startswith("<|start_header_id|>system")
    ids = tok.encode(prompt)
    assert ids.count(tok.bos_token_id) == 1
    # without the tokenizer adding one, the template's BOS stays
    assert apply_form(base, "chat", tokenizer_factory(BOS_WRITING)).render(["Hello."]).startswith(tok.bos_token)


def test_template_without_system_role_folds_the_instruction(tokenizer_factory, base: Template) -> None:
    chat = apply_form(base, "chat", tokenizer_factory(NO_SYSTEM))
    assert not chat.system_turn
    assert chat.prefix.startswith("<start_of_turn>user\n" + base.instruction + "\n\nSentences:\n1. The bakery")
    assert chat.render(["Hi."]).endswith("<end_of_turn>\n<start_of_turn>model\nEnglish 1: Hi.\nGerman 1:")


def test_a_rewriting_template_is_refused(tokenizer_factory, base: Template) -> None:
    with pytest.raises(ChatFormError, match="byte-identical"):
        apply_form(base, "chat", tokenizer_factory(REWRITING))


async def test_fake_engine_answers_chat_prompts_and_hits_the_prefix(tokenizer_factory, base: Template) -> None:
    chat = apply_form(base, "chat", tokenizer_factory(CHATML))
    engine = FakeEngine(template=chat)
    params = GenerationParams(max_tokens=64, stop=chat.stop_for(2))
    first = await engine.generate(chat.render(["One.", "Two."]), params)
    second = await engine.generate(chat.render(["Three."]), GenerationParams(max_tokens=64))
    assert [s.text for s in chat.parse(first.text, ["One.", "Two."])] == ["[de] One.", "[de] Two."]
    assert engine.prompts == [["One.", "Two."], ["Three."]]
    assert first.cached_prompt_tokens == 0 and second.cached_prompt_tokens > 0


def test_prompt_tokens_count_the_head_once(tokenizer_factory, base: Template) -> None:
    tok = tokenizer_factory(CHATML)
    chat = apply_form(base, "chat", tok)
    calls: list[str] = []

    def count(text: str) -> int:
        calls.append(text)
        return len(tok.encode(text))

    for s in (["A."], ["B."]):
        p = chat.render(s)
        assert abs(chat.prompt_tokens(p, count) - len(tok.encode(p))) <= 2
    assert calls.count(chat.prefix) == 1


def test_http_engines_load_the_tokenizer_named_by_the_settings(tmp_path, base: Template) -> None:
    from batchmt_server.prompting.chat import engine_tokenizer
    from batchmt_server.settings import Settings

    tok = byte_tokenizer()
    tok.chat_template = CHATML
    tok.save_pretrained(tmp_path / "tok")

    class Remote:  # an HTTP engine has no tokenizer of its own
        tokenizer = None

    http = dict(engine_url="http://127.0.0.1:9", data_dir=tmp_path / "data")
    loaded = engine_tokenizer(Remote(), Settings(tokenizer=str(tmp_path / "tok"), **http))
    assert isinstance(apply_form(base, "auto", loaded), ChatTemplate)
    assert engine_tokenizer(Remote(), Settings(**http)) is None  # no --tokenizer, no --model: completion form
    with pytest.raises(ChatFormError, match="needs --tokenizer"):
        engine_tokenizer(Remote(), Settings(template_form="chat", **http))
    with pytest.raises(ChatFormError, match="cannot load the tokenizer"):
        engine_tokenizer(Remote(), Settings(template_form="chat", tokenizer=str(tmp_path / "missing"), **http))
