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


def _run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], env: dict[str, str], *argv: str):
    for var in [v for v in __import__("os").environ if v.startswith("BATCHMT_")]:
        monkeypatch.delenv(var)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    code = main(["serve", *argv])
    return code, capsys.readouterr().err


def test_a_misspelt_variable_is_an_error_naming_the_closest_setting(monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, {"BATCHMT_CALIBRATON": "off"})
    assert code == 2
    assert "BATCHMT_CALIBRATON is not a setting (did you mean BATCHMT_CALIBRATION?)" in err
    code, err = _run(monkeypatch, capsys, {"BATCHMT_NOTHING_LIKE_IT": "1"})
    assert code == 2 and "no setting has a similar name" in err


def test_the_sdk_and_test_variables_are_not_settings_errors():
    from batchmt_server.settings import unknown_variables

    assert unknown_variables({"BATCHMT_BASE_URL": "http://x", "BATCHMT_TEST_DATA": "/d", "BATCHMT_PORT": "1"}) == []


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BATCHMT_PORT": "abc"}, "BATCHMT_PORT=abc: expects an integer >= 0 and <= 65535"),
        ({"BATCHMT_ENGINE": "vllmx"}, "BATCHMT_ENGINE=vllmx: expects one of 'vllm', 'http', 'fake'"),
        ({"BATCHMT_MAX_WAIT_MS": "-3"}, "BATCHMT_MAX_WAIT_MS=-3: expects a number >= 0.0"),
        ({"BATCHMT_ENGINE_ARGS": "{bad"}, "BATCHMT_ENGINE_ARGS: expects a JSON object"),
        ({"BATCHMT_ENGINE": "http"}, "engine 'http' needs engine_url"),
    ],
)
def test_a_bad_value_names_the_variable_and_what_it_expects_without_a_pydantic_dump(monkeypatch, capsys, env, expected):
    code, err = _run(monkeypatch, capsys, env)
    assert code == 2
    assert expected in err, err
    assert "pydantic.dev" not in err and "validation error for Settings" not in err and "type=" not in err


def test_a_bad_flag_value_names_the_flag(monkeypatch, capsys):
    code, err = _run(monkeypatch, capsys, {}, "--max-wait-ms", "-1")
    assert code == 2 and "--max-wait-ms=-1.0: expects a number >= 0.0" in err, err
