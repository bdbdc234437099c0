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
    assert "decodes ~30% slower (default: off)" in text
    # a factory default (--engine-arg: dict) once showed as "(default: PydanticUndefined)"
    assert "PydanticUndefined" not in text
    assert "win over a preset's (default: –)" in text
    # a description that names its default in words gets no second "(default: None)"
    assert "prompts/calibration/en-de.tsv) (default" not in text
    assert "--max-wait-ms" in text and "--pack-policy" in text


def test_a_database_url_with_a_password_is_refused_on_the_command_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--engine", "fake", "--database-url", "postgresql://batchmt:s3cret@db:5432/batchmt"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "BATCHMT_DATABASE_URL" in err and "s3cret" not in err


def test_a_database_url_without_a_password_passes_the_flag() -> None:
    from batchmt_server.cli import _url_without_password

    assert _url_without_password("postgresql://batchmt@db/batchmt") == "postgresql://batchmt@db/batchmt"
    assert _url_without_password("sqlite:////tmp/x.sqlite3") == "sqlite:////tmp/x.sqlite3"
