"""The embedded models' table and name resolution (no conversion: that runs in `make model` / `make smollm2`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchmt_server.models.embedded import (
    ADAPTERS_DIR,
    EMBEDDED_MODELS,
    embedded_model,
    prepare_embedded_model,
    resolve_model,
)


def test_names_and_aliases() -> None:
    assert embedded_model("embedded") is EMBEDDED_MODELS["embedded"]
    assert embedded_model("gemma") is EMBEDDED_MODELS["embedded"]
    assert embedded_model("smollm2").served_name == "smollm2-135m-instruct"
    assert embedded_model("meta-llama/Llama-3.1-8B-Instruct") is None


def test_folders_and_ids_pass_through(tmp_path: Path) -> None:
    assert resolve_model("meta-llama/Llama-3.1-8B-Instruct", tmp_path) == "meta-llama/Llama-3.1-8B-Instruct"
    assert resolve_model("/models/x", tmp_path) == "/models/x"


def test_unknown_embedded_name_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no embedded model 'nope'"):
        prepare_embedded_model(tmp_path, "nope")


def test_a_converted_folder_is_reused(tmp_path: Path) -> None:
    folder = tmp_path / "models" / EMBEDDED_MODELS["smollm2"].folder
    folder.mkdir(parents=True)
    (folder / ".batchmt-complete").write_text("done\n")
    assert prepare_embedded_model(tmp_path, "smollm2") == folder


def test_the_default_is_the_self_trained_adapter_on_the_base() -> None:
    """`embedded` is `embedded-base` + the shipped ReST adapter (<= 20 MB, with its model card naming base and data)."""
    import json

    from batchmt_server.models.embedded import ADAPTERS_DIR, adapter_digest

    spec = embedded_model("embedded")
    assert spec.base == "embedded-base" and embedded_model("embedded-base").adapter is None
    assert embedded_model("gemma-3-270m") is EMBEDDED_MODELS["embedded-base"]
    folder = ADAPTERS_DIR / spec.adapter
    assert (folder / "adapter_model.safetensors").stat().st_size <= 20 * 2**20
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "embedded-base" and config["peft_type"] == "LORA"
    card = json.loads((folder / "batchmt-selftrain.json").read_text())
    assert "Gemma Terms of Use" in card["base_model"] and "no reference translation" in card["training_data"]
    assert card["improve"]["kept"] > 0 and (folder / "README.md").exists()
    assert len(adapter_digest(folder)) == 8


def test_a_merged_adapter_folder_is_reused(tmp_path: Path) -> None:
    from batchmt_server.models.embedded import ADAPTERS_DIR, adapter_digest

    spec = embedded_model("embedded")
    folder = tmp_path / "models" / f"{spec.folder}-{adapter_digest(ADAPTERS_DIR / spec.adapter)}"
    folder.mkdir(parents=True)
    (folder / ".batchmt-complete").write_text("done\n")
    assert prepare_embedded_model(tmp_path, "embedded") == folder


def test_a_model_made_with_a_shipped_adapter_is_named_by_the_adapter(monkeypatch, tmp_path):
    """A new adapter is a new model: the served name (calibration's cache key, signatures, memory) changes with it."""
    import shutil

    from batchmt_server.models import embedded as emb
    from batchmt_server.settings import Settings

    spec = embedded_model("embedded")
    assert spec is not None and spec.adapter is not None
    name = Settings(model="embedded").model_name
    assert name == f"{spec.served_name}-{emb.adapter_digest(emb.ADAPTERS_DIR / spec.adapter)}"
    assert Settings(model="embedded-base").model_name == "gemma-3-270m"
    copy = tmp_path / spec.adapter
    shutil.copytree(emb.ADAPTERS_DIR / spec.adapter, copy)
    (copy / "adapter_config.json").write_text((copy / "adapter_config.json").read_text() + "\n")
    monkeypatch.setattr(emb, "ADAPTERS_DIR", tmp_path)
    assert Settings(model="embedded").model_name not in (name, spec.served_name)


def test_a_self_trained_model_falls_back_to_the_template_it_learned(tmp_path) -> None:
    """Template ``auto`` tries the template named in the model's self-training card first (the fallback without
    calibration): the shipped adapter's card for ``embedded``, the folder's card for a merged model."""
    import json

    from batchmt_server.models.embedded import trained_template
    from batchmt_server.settings import Settings

    shipped = json.loads((ADAPTERS_DIR / "gemma-3-270m-rest" / "batchmt-selftrain.json").read_text())
    assert trained_template("embedded") == shipped["data"]["template"].split("@")[0] == "en-de-list"
    assert trained_template("embedded-base") is None and trained_template(str(tmp_path)) is None
    (tmp_path / "batchmt-selftrain.json").write_text(json.dumps({"data": {"template": "en-de-zero@1+0123abcd"}}))
    assert trained_template(str(tmp_path)) == "en-de-zero"

    assert Settings(model=str(tmp_path)).template_names[0] == "en-de-zero"
    assert Settings().template_names[:2] == ["en-de-list", "en-de-packed"]
    assert Settings(model="embedded-base").template_names[0] == "en-de-packed"
    # variants set by the operator, a fixed template, or the fake engine: as given
    assert Settings(template_variants="en-de-packed,en-de-short").template_names == ["en-de-packed", "en-de-short"]
    assert Settings(template="en-de-short").template_names == ["en-de-short"]
    assert Settings(engine="fake").template_names[0] == "en-de-packed"
    # an HTTP engine serves what its server serves: the card is read only when --model names it
    assert Settings(engine_url="http://127.0.0.1:9").template_names[0] == "en-de-packed"
    assert Settings(engine_url="http://127.0.0.1:9", model=str(tmp_path)).template_names[0] == "en-de-zero"
