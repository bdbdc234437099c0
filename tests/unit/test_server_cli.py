"""``batchmt-server --help``: every setting is a readable flag."""

from __future__ import annotations

import pytest

from batchmt_server.cli import main


def test_help_lists_every_setting_readably(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "option_strings" not in text  # an unescaped % once printed argparse's internals
    assert "decodes ~30% slower (default: False)" in text
    # a description that names its default in words gets no second "(default: None)"
    assert "prompts/calibration/en-de.tsv) (default" not in text
    assert "--max-wait-ms" in text and "--pack-policy" in text
