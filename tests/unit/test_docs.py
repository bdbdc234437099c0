"""The README stays a front page, docs/ links resolve, docs/api.md's settings table is the Settings class."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from scripts import settings_table
from tests.helpers import running_gateway

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = sorted([README, *(REPO / "docs").glob("*.md"), REPO / "deploy" / "README.md"])


def _words(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").split())


def test_readme_is_a_front_page_under_1500_words():
    assert _words(README) < 1500, f"README.md has {_words(README)} words: move detail to docs/"


def test_readme_has_the_newcomer_path():
    text = README.read_text(encoding="utf-8")
    for needed in (
        "make serve",
        "make test",
        "--engine fake",
        "curl ",
        "batchmt.Client",
        "--as-job",
        "docs/benchmarks.md",
        "docs/guide.md",
        "docs/api.md",
        "## Layout",
        "GB of RAM",
    ):
        assert needed in text, needed


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    text = doc.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        path = target.split("#", 1)[0]
        if not (doc.parent / path).exists():
            missing.append(target)
    assert not missing, missing


def test_benchmark_diary_moved_whole_to_docs_benchmarks():
    text = (REPO / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    for heading in ("## Benchmarks", "### Where the engine's time goes", "### The gateway alone"):
        assert heading in text
    assert "median 1.12× and 1.10× plain vLLM's sentences/s" in text


def test_docs_api_settings_table_is_generated_from_the_settings_class():
    current = settings_table.API_MD.read_text(encoding="utf-8")
    assert settings_table.rendered(current) == current, (
        "docs/api.md's settings table differs from the Settings class: run python scripts/settings_table.py --write"
    )


def test_the_settings_table_lists_every_setting_with_its_default():
    from batchmt_server.cli import default_text
    from batchmt_server.settings import Settings

    table = settings_table.table()
    for name in Settings.model_fields:
        row = next(line for line in table.splitlines() if f"`BATCHMT_{name.upper()}`" in line)
        assert f"| `{default_text(name)}` |" in row, row
    assert "PydanticUndefined" not in table


def _number(text: str) -> float:
    return float(text.replace(",", ""))


def test_defaults_quoted_in_docs_api_prose_match_the_settings():
    """ "`--job-max-lines-in-flight` lines (16)" stayed when the default became 64: numbers next to a flag agree."""
    from batchmt_server.settings import Settings

    text = settings_table.API_MD.read_text(encoding="utf-8").split(settings_table.START)[0]
    checked = 0
    for flag, number, unit in re.findall(
        r"`--([a-z0-9-]+)`[^()`\n]{0,20}\((?:default )?([0-9][0-9,.]*) ?(MB|s)?\)", text
    ):
        name = flag.replace("-", "_")
        default = Settings.model_fields[name].get_default(call_default_factory=True)
        value = _number(number) * (1024 * 1024 if unit == "MB" else 1)
        assert value == pytest.approx(float(default)), f"--{flag}: docs/api.md says {number} {unit}, default {default}"
        checked += 1
    assert checked >= 3


def test_docs_api_examples_use_texts_not_the_legacy_sentences_field():
    text = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert '"body": {"sentences"' not in text
    assert '"body": {"texts"' in text


def _readme_curl_body() -> dict:
    text = README.read_text(encoding="utf-8")
    block = re.search(r"```bash\n(curl -s localhost:8000/v1/translate.*?)\n(?:#|```)", text, re.S)
    assert block, "README has no curl to /v1/translate"
    args = shlex.split(block.group(1).replace("\\\n", " "))
    return json.loads(args[args.index("-d") + 1])


async def test_the_readme_curl_translates_on_the_fake_engine():
    body = _readme_curl_body()
    async with running_gateway() as (client, _app):
        r = await client.post("/v1/translate", json=body)
    assert r.status_code == 200, r.text
    (item,) = r.json()["translations"]
    assert item["status"] == "ok" and item["text"].startswith("[de] ")
