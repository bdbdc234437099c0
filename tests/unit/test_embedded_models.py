"""The embedded models' table and name resolution (no conversion: that runs in `make model` / `make smollm2`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchmt_server.models.embedded import EMBEDDED_MODELS, embedded_model, prepare_embedded_model, resolve_model


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
