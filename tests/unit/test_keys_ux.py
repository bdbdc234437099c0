"""``batchmt-server keys`` and the gateway's start, as a newcomer meets them (issue 26): the first key says it
switches authentication on, a store without an admin says so, ``keys`` reads the store ``serve`` uses, its help
lists its own flags, a 403 names the role needed, and the server's admin key has a variable of its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchmt_server.auth.keys import KeyRing
from batchmt_server.auth.keys_cli import auth_summary
from batchmt_server.cli import main
from batchmt_server.jobs.serving import JobsConfig
from batchmt_server.settings import Settings
from batchmt_server.stores import build_store
from batchmt_server.stores.keys import open_key_store
from tests.unit.test_front import DASH_KEY, KEY, USER_KEY, auth, front, ring


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for var in [v for v in os.environ if v.startswith("BATCHMT_")]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("BATCHMT_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


def test_keys_create_help_lists_its_own_flags_not_the_servers(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["keys", "create", "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "--name" in text and "--role" in text and "--data-dir" in text and "--database-url" in text
    for server_flag in ("--max-wait-ms", "--engine-url", "--pack-policy", "--model"):
        assert server_flag not in text, server_flag
    assert text.count("\n  --") < 20


def test_the_first_key_warns_that_auth_is_on_and_that_nobody_is_admin(clean_env, capsys):
    assert main(["keys", "create", "--name", "alice"]) == 0
    out = capsys.readouterr()
    assert len(out.out.strip()) >= 16  # the key, on stdout
    assert "authentication is now ON for every gateway on this store" in out.err
    assert "no admin key exists" in out.err and "keys create --name ops --role admin" in out.err
    assert main(["keys", "create", "--name", "ops", "--role", "admin"]) == 0
    err = capsys.readouterr().err
    assert "authentication is now ON" not in err and "no admin key" not in err
    assert main(["keys", "list"]) == 0
    listed = capsys.readouterr()
    assert f"keys in {clean_env / 'batchmt.sqlite3'}" in listed.err and "alice" in listed.out


def test_keys_and_serve_read_the_same_default_store(clean_env, monkeypatch, tmp_path):
    monkeypatch.delenv("BATCHMT_DATA_DIR")  # the defaults, as on a newcomer's machine
    settings = Settings(engine="fake", cache_dir=tmp_path / "cache")
    jobs = JobsConfig.from_settings(settings)
    gateway_store = build_store(jobs.database_url, jobs.data_dir)
    assert open_key_store(settings).path == gateway_store.path == tmp_path / "cache" / "data" / "batchmt.sqlite3"


def test_the_start_says_whether_auth_is_on_and_who_is_admin(clean_env, capsys):
    settings = Settings(engine="fake")
    (level, message), *_ = auth_summary(settings)
    assert level == "info" and "authentication is off" in message
    main(["keys", "create", "--name", "alice"])
    capsys.readouterr()
    lines = auth_summary(Settings(engine="fake"))
    assert any("authentication is on: 1 key(s)" in m and "admin: nobody" in m for _, m in lines)
    assert ("warning", next(m for lvl, m in lines if lvl == "warning")) in lines
    main(["keys", "create", "--name", "ops", "--role", "admin"])
    lines = auth_summary(Settings(engine="fake", admin_key="x" * 20))
    assert [lvl for lvl, _ in lines] == ["info"] and "admin: BATCHMT_ADMIN_KEY, ops" in lines[0][1]


def test_the_servers_admin_key_has_its_own_variable_and_the_old_name_warns(clean_env, monkeypatch):
    monkeypatch.setenv("BATCHMT_ADMIN_KEY", "admin-key-0123456789")
    ring_ = KeyRing.from_settings(Settings(engine="fake"))
    assert [r.role for r in ring_.static] == ["admin"]
    monkeypatch.delenv("BATCHMT_ADMIN_KEY")
    monkeypatch.setenv("BATCHMT_API_KEY", "client-key-0123456789")
    lines = auth_summary(Settings(engine="fake"))
    assert any(lvl == "warning" and "older name of BATCHMT_ADMIN_KEY" in m for lvl, m in lines)


async def test_a_403_names_the_role_the_endpoint_needs():
    async with front(ring()) as (c, _app):
        metrics = await c.get("/metrics", headers=auth(USER_KEY))
        dash = await c.get("/dashboard/data", headers=auth(USER_KEY))
        api = await c.post("/v1/translate", json={"texts": ["Hi."]}, headers=auth(DASH_KEY))
        ok = await c.get("/metrics", headers=auth(KEY))
    assert metrics.status_code == 403 and "needs an admin key" in metrics.json()["error"]["message"]
    assert "has the role user" in metrics.json()["error"]["message"]
    assert dash.status_code == 403 and "needs an admin or dashboard key" in dash.json()["error"]["message"]
    assert api.status_code == 403 and "needs a user or admin key" in api.json()["error"]["message"]
    assert "has the role dashboard" in api.json()["error"]["message"]
    assert ok.status_code == 200


def test_serve_logs_the_auth_summary_at_start(clean_env, capfd, monkeypatch):
    import batchmt_server.http.serving as serving

    monkeypatch.setattr(serving, "run_server", lambda app, settings: 0)
    assert main(["serve", "--engine", "fake"]) == 0
    assert "batchmt.auth [-]: authentication is off" in capfd.readouterr().err
