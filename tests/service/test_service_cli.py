"""The service commands of the CLI (issue 3 §5, §6, §8) on both databases: `keys create`
prints a key as the last line of stdout that the API accepts, `keys rotate` and
`keys revoke`, `users create`, `db upgrade` / `db current`, and `audit verify` (exit 0 on an
intact chain, 4 after an edit, naming the event and the kind). Bad values exit 2 with a
message naming them. The real `refundlens` runs as a subprocess where the contract is the
process (§8); elsewhere :func:`refundlens.cli.main` runs in-process with the same
environment, which is quicker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from refundlens.cli import EXIT_CODES, main
from refundlens.claims.access import sign_in
from refundlens.store.tables import ApiKey, AuditEvent, User
from serving import Server  # a real `refundlens serve` in its own process group

REFUNDLENS = Path(sys.executable).with_name("refundlens")


@pytest.fixture
def env(settings: Any, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment that points the CLI at the test's data directory and database (the
    same ones ``svc`` and ``client`` use)."""
    values = {"REFUNDLENS_DATA_DIR": str(settings.data_dir),
              "REFUNDLENS_DATABASE_URL": settings.database_url}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REFUNDLENS_POLICY", raising=False)
    return {**os.environ, **values}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REFUNDLENS), *args], env=env, capture_output=True, text=True,
                          timeout=120)


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def key_id(token: str) -> str:
    return token.split("_")[1]


def test_keys_create_prints_a_key_the_api_accepts(env, client, svc):
    proc = run(env, "keys", "create", "--role", "admin", "--name", "ops")
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip().splitlines()[-1]
    assert token.startswith("rl_"), proc.stdout
    assert token not in proc.stdout.strip().splitlines()[0]  # the last line is the key alone
    merchant = client.post("/api/v1/merchants", json={"name": "CLI 店"}, headers=bearer(token))
    assert merchant.status_code == 201, merchant.text
    assert client.get("/api/v1/claims", headers=bearer(token)).status_code == 200
    with svc.db.read() as session:
        row = session.get(ApiKey, key_id(token))
        assert row is not None and row.role == "admin" and row.name == "ops"
        assert token.split("_", 2)[2] not in row.secret_hash  # stored hashed

    # a merchant key for that merchant sees its own claims only
    merchant_id = merchant.json()["id"]
    proc = run(env, "keys", "create", "--role", "merchant", "--merchant", merchant_id)
    assert proc.returncode == 0, proc.stderr
    assert merchant_id in proc.stdout
    scoped = proc.stdout.strip().splitlines()[-1]
    assert client.get("/api/v1/claims", headers=bearer(scoped)).status_code == 200
    assert client.post("/api/v1/merchants", json={"name": "x"},
                       headers=bearer(scoped)).status_code == 403


@pytest.mark.parametrize("args, says", [
    (("keys", "create", "--role", "merchant"), "--merchant"),
    (("keys", "create", "--role", "admin", "--merchant", "mer_x"), "only merchant keys"),
    (("keys", "create", "--role", "merchant", "--merchant", "mer_missing"), "mer_missing"),
    (("keys", "rotate", "keynotakey"), "keynotakey"),
    (("keys", "revoke", "keynotakey"), "keynotakey"),
    (("users", "create", "--role", "merchant", "--username", "m1", "--password",
      "long enough 1"), "--merchant"),
    (("users", "create", "--role", "admin", "--username", "a1", "--password", "short"),
     "password"),
])
def test_bad_values_exit_2_with_a_message_naming_them(env, capsys, args, says):
    code, out, err = cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.startswith("refundlens: error: ") and says in err, err
    assert "Traceback" not in err


def test_a_merchant_key_without_merchant_exits_2_from_the_real_command(env):
    proc = run(env, "keys", "create", "--role", "merchant")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "merchant key" in proc.stderr and "--merchant" in proc.stderr
    assert proc.stdout == ""  # no key printed


def test_exit_2_is_documented_for_refused_values():
    assert "--merchant" in EXIT_CODES[2] and "unknown key" in EXIT_CODES[2]
    docs = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"| 2 | {EXIT_CODES[2]} |" in docs


def test_keys_rotate_and_revoke(env, client, capsys, svc):
    code, out, _ = cli(capsys, "keys", "create", "--role", "reviewer")
    assert code == 0
    old = out.strip().splitlines()[-1]
    assert client.get("/api/v1/queue", headers=bearer(old)).status_code == 200

    code, out, _ = cli(capsys, "keys", "rotate", key_id(old))
    assert code == 0, out
    new = out.strip().splitlines()[-1]
    assert new != old and key_id(old) in out
    # both work during the grace period; the new one has the old one's role
    assert client.get("/api/v1/queue", headers=bearer(new)).status_code == 200
    assert client.get("/api/v1/queue", headers=bearer(old)).status_code == 200
    with svc.db.read() as session:
        successor = session.get(ApiKey, key_id(new))
        assert successor.role == "reviewer" and successor.replaces == key_id(old)
        assert session.get(ApiKey, key_id(old)).expires_at is not None

    code, out, _ = cli(capsys, "keys", "revoke", key_id(old))
    assert code == 0 and key_id(old) in out
    assert client.get("/api/v1/queue", headers=bearer(old)).status_code == 401
    assert client.get("/api/v1/queue", headers=bearer(new)).status_code == 200
    # revoking twice is harmless
    assert cli(capsys, "keys", "revoke", key_id(old))[0] == 0
    with svc.db.read() as session:
        actions = [e.action for e in session.execute(select(AuditEvent)).scalars()]
    assert {"api_key_created", "api_key_rotated", "api_key_revoked"} <= set(actions)


@pytest.mark.slow
def test_a_key_revoked_by_the_cli_is_refused_by_a_running_server_at_once(env, svc, tmp_path):
    """`refundlens keys revoke` in one process, `refundlens serve` in another: the next
    request with the key is refused, although the server accepted it a moment before."""
    env = {**env, "REFUNDLENS_ANALYSIS_WORKERS": "0"}
    made = [run(env, "keys", "create", "--role", "reviewer") for _ in range(2)]
    assert all(m.returncode == 0 for m in made), [m.stderr for m in made]
    token, other = (m.stdout.strip().splitlines()[-1] for m in made)
    server = Server(env, tmp_path / "serve.log")
    try:
        server.start()
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(5):
                assert http.get("/api/v1/queue", headers=bearer(token)).status_code == 200
            revoked = run(env, "keys", "revoke", key_id(token))
            assert revoked.returncode == 0, revoked.stderr
            refused = http.get("/api/v1/queue", headers=bearer(token))
            assert refused.status_code == 401, refused.text
            assert refused.json()["error"]["code"] == "unauthorized"
            assert http.get("/api/v1/queue", headers=bearer(other)).status_code == 200
    finally:
        server.stop()


def test_users_create(env, capsys, client, keys, svc):
    code, out, err = cli(capsys, "users", "create", "--role", "reviewer", "--username",
                         "lin.wei", "--password", "correct horse 42")
    assert code == 0, err
    assert "lin.wei" in out
    assert sign_in(svc, "lin.wei", "correct horse 42") is not None
    assert sign_in(svc, "lin.wei", "wrong password") is None
    with svc.db.read() as session:
        user = session.execute(select(User).where(User.username == "lin.wei")).scalar_one()
        assert user.role == "reviewer" and "correct horse" not in user.password_hash
    # the same name again is refused, naming it
    code, _, err = cli(capsys, "users", "create", "--role", "admin", "--username", "lin.wei",
                       "--password", "another one 42")
    assert code == 2 and "lin.wei" in err

    merchant_id = client.post("/api/v1/merchants", json={"name": "店"},
                              headers=keys.admin).json()["id"]
    code, out, err = cli(capsys, "users", "create", "--role", "merchant", "--username", "shop",
                         "--password", "shop password 1", "--merchant", merchant_id)
    assert code == 0, err
    with svc.db.read() as session:
        assert session.execute(select(User).where(User.username == "shop")
                               ).scalar_one().merchant_id == merchant_id


def test_db_upgrade_and_current(tmp_path, capsys, monkeypatch, database_url):
    from refundlens.store import Database

    if database_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'fresh' / 'refundlens.db'}"
    else:  # a new, empty database on the test server
        from sqlalchemy import create_engine, text

        admin = create_engine(database_url.rsplit("/", 1)[0] + "/postgres",
                              isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE cli_fresh"))
        admin.dispose()
        url = database_url.rsplit("/", 1)[0] + "/cli_fresh"
    monkeypatch.setenv("REFUNDLENS_DATA_DIR", str(tmp_path / "fresh-data"))
    monkeypatch.setenv("REFUNDLENS_DATABASE_URL", url)
    head = Database(url)
    try:
        newest = head.head_revision()
        code, out, _ = cli(capsys, "db", "current")
        assert code == 0 and f"schema revision None (newest {newest})" in out
        # the service refuses an old schema and says what to run
        code, _, err = cli(capsys, "audit", "verify")
        assert code == 2 and "refundlens db upgrade" in err
        code, out, _ = cli(capsys, "db", "upgrade")
        assert code == 0 and f"schema revision {newest} (newest {newest})" in out
        assert head.current_revision() == newest
        code, out, _ = cli(capsys, "db", "upgrade")  # again: nothing to do
        assert code == 0 and f"schema revision {newest}" in out
        code, out, _ = cli(capsys, "db", "current")
        assert code == 0 and f"schema revision {newest} (newest {newest})" in out
        assert "password" not in out
        code, out, _ = cli(capsys, "audit", "verify")
        assert code == 0 and "intact: 0 events" in out
    finally:
        head.dispose()
        if not database_url.startswith("sqlite"):
            from sqlalchemy import create_engine, text

            admin = create_engine(database_url.rsplit("/", 1)[0] + "/postgres",
                                  isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text("DROP DATABASE IF EXISTS cli_fresh WITH (FORCE)"))
            admin.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("args", [("db", "upgrade"), ("db", "current"), ("audit", "verify")])
def test_an_unreachable_database_exits_2_saying_so(tmp_path, capsys, monkeypatch, backend,
                                                   args):
    """No server on the port (PostgreSQL), a directory where the file should be (SQLite):
    every command that opens the database says it cannot connect and exits 2, as
    documented, not 1 with a traceback."""
    if backend == "sqlite":
        (tmp_path / "refundlens.db").mkdir()
        url = f"sqlite:///{tmp_path / 'refundlens.db'}"
    else:
        url = "postgresql+psycopg://nobody@127.0.0.1:1/x"
    monkeypatch.setenv("REFUNDLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REFUNDLENS_DATABASE_URL", url)
    code, out, err = cli(capsys, *args)
    assert code == 2, (code, out, err)
    assert err.startswith("refundlens: error: database ") and "cannot connect" in err, err
    assert url in err and "Traceback" not in err and "internal error" not in err
    assert out == ""


def _uncreatable_data_dirs(tmp_path: Path) -> list[tuple[Path, str]]:
    """Data directories that cannot be created, with what the error says about each: under
    a file, the file itself, and under /proc (where nothing can be made)."""
    (tmp_path / "a-file").write_text("not a directory")
    return [(tmp_path / "a-file" / "data", "Not a directory"),
            (tmp_path / "a-file", "it is a file"),
            (Path("/proc/refundlens-nope"), "No such file or directory")]


@pytest.mark.parametrize("args", [
    ("keys", "create", "--role", "admin"), ("db", "upgrade"), ("db", "current"),
    ("audit", "verify"), ("users", "create", "--role", "reviewer", "--username", "u1",
                          "--password", "long enough 1")])
def test_a_data_dir_that_cannot_be_created_exits_2_naming_it(tmp_path, capsys, monkeypatch,
                                                            database_url, args):
    """REFUNDLENS_DATA_DIR under a file, or on /proc: a configuration error naming the
    setting and the path, exit 2 (was NotADirectoryError / FileNotFoundError, exit 1). On
    PostgreSQL too, where the data directory holds the blobs and keys; ``db`` there needs
    no data directory and does not make one."""
    if database_url.startswith("sqlite"):  # the embedded default, in the data directory
        monkeypatch.delenv("REFUNDLENS_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("REFUNDLENS_DATABASE_URL", database_url)
    for data_dir, why in _uncreatable_data_dirs(tmp_path):
        monkeypatch.setenv("REFUNDLENS_DATA_DIR", str(data_dir))
        code, out, err = cli(capsys, *args)
        if args[0] == "db" and not database_url.startswith("sqlite"):
            assert code == 0 and "schema revision" in out, (code, out, err)
            continue
        assert code == 2, (data_dir, code, out, err)
        assert err.startswith(f"refundlens: error: setting REFUNDLENS_DATA_DIR={str(data_dir)!r}"
                              f": cannot create the directory ("), err
        assert why in err and "Traceback" not in err
        assert out == ""  # no key printed


def test_scan_with_a_data_dir_that_cannot_be_created_exits_2(tmp_path, capsys, monkeypatch):
    """``scan`` keeps its reuse index in the data directory by default."""
    from conftest import jpeg, textured_rgb

    photo = tmp_path / "photo.jpg"
    photo.write_bytes(jpeg(textured_rgb(64, 64)))
    data_dir, why = _uncreatable_data_dirs(tmp_path)[0]
    monkeypatch.setenv("REFUNDLENS_DATA_DIR", str(data_dir))
    code, out, err = cli(capsys, "scan", str(photo))
    assert code == 2 and "REFUNDLENS_DATA_DIR" in err and why in err, (code, err)


def test_serve_with_a_data_dir_that_cannot_be_created_exits_2(tmp_path, database_url):
    """The real `refundlens serve` (§8) stops before it listens, naming the setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFUNDLENS_")}
    env["REFUNDLENS_DATA_DIR"] = str(tmp_path / "a-file" / "data")
    if not database_url.startswith("sqlite"):
        env["REFUNDLENS_DATABASE_URL"] = database_url
    (tmp_path / "a-file").write_text("not a directory")
    proc = run(env, "serve", "--port", "1")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "REFUNDLENS_DATA_DIR" in proc.stderr and str(tmp_path / "a-file") in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_sqlite_url_whose_directory_cannot_be_created_exits_2(tmp_path, capsys,
                                                               monkeypatch):
    (tmp_path / "a-file").write_text("not a directory")
    url = f"sqlite:///{tmp_path / 'a-file' / 'db' / 'refundlens.db'}"
    monkeypatch.setenv("REFUNDLENS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("REFUNDLENS_DATABASE_URL", url)
    for args in (("db", "current"), ("keys", "create", "--role", "admin")):
        code, out, err = cli(capsys, *args)
        assert code == 2, (code, out, err)
        assert f"database URL {url!r}: cannot create its directory" in err, err


def test_audit_verify_exits_0_then_4_naming_the_edited_event(env, client, keys, svc, capsys):
    client.post("/api/v1/merchants", json={"name": "审计店"}, headers=keys.admin)
    proc = run(env, "audit", "verify")
    assert proc.returncode == 0, proc.stderr
    assert "audit chain intact" in proc.stdout

    with svc.db.read() as session:
        seqs = list(session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
    target = seqs[1]
    with svc.db.write() as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == target)
                        .values(actor="admin:nobody"))
    proc = run(env, "audit", "verify")
    assert proc.returncode == 4, (proc.stdout, proc.stderr)
    assert f"BROKEN at event {target} (edited)" in proc.stdout

    code, out, _ = cli(capsys, "audit", "verify", "--json")
    assert code == 4
    import json

    report = json.loads(out)
    assert report["ok"] is False
    assert report["first_problem"]["seq"] == target
    assert report["first_problem"]["kind"] == "edited"
