"""The keystore on a real SQLite file: hashing, lookup, rotation, revocation."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from claudegate_gateway.keystore import KeyStore, KeyStoreError, Scopes, public_id_of


@pytest.fixture
def store(tmp_path: Path) -> KeyStore:
    return KeyStore(tmp_path / "keys.db", "pepper-for-tests")


def test_key_is_stored_only_as_keyed_hash(store: KeyStore, tmp_path: Path) -> None:
    key = store.create("team-a", Scopes())
    store.close()
    raw = (tmp_path / "keys.db").read_bytes()
    for extra in tmp_path.glob("keys.db-*"):
        raw += extra.read_bytes()
    secret_part = key.split("_", 2)[2]
    assert secret_part.encode() not in raw
    assert key.encode() not in raw
    # The public id is there on purpose, for lookup.
    assert public_id_of(key) is not None
    assert public_id_of(key).encode() in raw  # type: ignore[union-attr]


def test_digest_depends_on_pepper(tmp_path: Path) -> None:
    a = KeyStore(tmp_path / "a.db", "pepper-one")
    key = a.create("x", Scopes())
    b = KeyStore(tmp_path / "a.db", "pepper-two")
    assert a.authenticate(key) is not None
    assert b.authenticate(key) is None


def test_authenticate_rejects_lookalikes(store: KeyStore) -> None:
    key = store.create("team-a", Scopes())
    assert store.authenticate(key).name == "team-a"  # type: ignore[union-attr]
    assert store.authenticate(key[:-1] + ("x" if key[-1] != "x" else "y")) is None
    assert store.authenticate(key + "a") is None
    assert store.authenticate("cgk_") is None
    assert store.authenticate("") is None
    assert store.authenticate("sk-ant-api03-whatever") is None


def test_duplicate_name_refused_and_bad_names(store: KeyStore) -> None:
    store.create("team-a", Scopes())
    with pytest.raises(KeyStoreError, match="rotate"):
        store.create("team-a", Scopes())
    with pytest.raises(KeyStoreError, match="letters"):
        store.create("bad name", Scopes())


def test_expiry(store: KeyStore) -> None:
    key = store.create("temp", Scopes(), expires_at=time.time() + 60)
    assert store.authenticate(key) is not None
    assert store.authenticate(key, now=time.time() + 61) is None


def test_rotate_with_overlap_keeps_old_key_until_end(store: KeyStore) -> None:
    old = store.create("svc", Scopes(models=("claude-*",)))
    new = store.rotate("svc", overlap_seconds=3600)
    assert new != old
    now = time.time()
    assert store.authenticate(old, now=now).name == "svc"  # type: ignore[union-attr]
    assert store.authenticate(new, now=now).scopes.models == ("claude-*",)  # type: ignore[union-attr]
    assert store.authenticate(old, now=now + 3601) is None
    assert store.authenticate(new, now=now + 3601) is not None


def test_rotate_without_overlap_ends_old_key_now(store: KeyStore) -> None:
    old = store.create("svc", Scopes())
    new = store.rotate("svc", overlap_seconds=0)
    assert store.authenticate(old) is None
    assert store.authenticate(new) is not None


def test_revoke_seen_by_other_connection_immediately(tmp_path: Path) -> None:
    server = KeyStore(tmp_path / "k.db", "p")
    key = server.create("svc", Scopes())
    assert server.authenticate(key) is not None  # now cached
    admin = KeyStore(tmp_path / "k.db", "p")
    admin.revoke("svc")
    assert server.authenticate(key) is None


def test_revoked_name_can_be_created_again_with_new_key(store: KeyStore) -> None:
    old = store.create("svc", Scopes())
    store.revoke("svc")
    new = store.create("svc", Scopes())
    assert store.authenticate(old) is None
    assert store.authenticate(new) is not None


def test_unknown_names(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="keys list"):
        store.revoke("nobody")
    with pytest.raises(KeyStoreError):
        store.rotate("nobody", 0)


def test_list_has_no_secrets(store: KeyStore) -> None:
    key = store.create("svc", Scopes(rpm=5))
    listing = store.list()
    assert listing[0]["name"] == "svc" and listing[0]["scopes"]["rpm"] == 5
    assert key not in repr(listing)
    assert key.split("_", 2)[2] not in repr(listing)


def test_schema_is_plain_sqlite(store: KeyStore, tmp_path: Path) -> None:
    store.create("svc", Scopes())
    db = sqlite3.connect(tmp_path / "keys.db")
    (digest,) = db.execute("SELECT digest FROM credentials").fetchone()
    assert len(digest) == 32  # HMAC-SHA256


def test_scope_globs() -> None:
    s = Scopes(
        models=("claude-haiku-*",), endpoints=("/v1/messages", "/v1/models*"), betas=("files-api-2025-04-14",)
    )
    assert s.model_allowed("claude-haiku-4-5")
    assert not s.model_allowed("claude-opus-4-1")
    assert s.endpoint_allowed("/v1/models/claude-haiku-4-5")
    assert not s.endpoint_allowed("/v1/files")
    assert s.beta_allowed("files-api-2025-04-14") and not s.beta_allowed("other")


def test_update_replaces_scopes_in_place_and_keeps_keys(tmp_path: Path) -> None:
    server = KeyStore(tmp_path / "k.db", "p")
    key = server.create("svc", Scopes(models=("claude-*",), rpm=5))
    assert server.authenticate(key).scopes.rpm == 5  # type: ignore[union-attr]  # now cached
    admin = KeyStore(tmp_path / "k.db", "p")
    ends = time.time() + 3600
    admin.update("svc", Scopes(models=("claude-haiku-*",), rpm=7, stream=False), ends)
    # The serving connection sees the new scopes on its very next lookup, with the same key.
    seen = server.authenticate(key)
    assert seen is not None and seen.scopes == Scopes(models=("claude-haiku-*",), rpm=7, stream=False)
    assert seen.expires_at == ends
    assert server.authenticate(key, now=ends + 1) is None
    # Declarative: omitted limits go back to their defaults, expiry included.
    admin.update("svc", Scopes(), None)
    again = server.authenticate(key, now=ends + 1)
    assert again is not None and again.scopes == Scopes() and again.expires_at is None


def test_update_refuses_unknown_and_revoked_clients(store: KeyStore) -> None:
    with pytest.raises(KeyStoreError, match="keys list"):
        store.update("nobody", Scopes(), None)
    key = store.create("svc", Scopes())
    store.revoke("svc")
    with pytest.raises(KeyStoreError, match="revoked"):
        store.update("svc", Scopes(), None)
    # An update cannot bring a revoked key back.
    assert store.authenticate(key) is None


def test_rotation_drops_credentials_that_ended(store: KeyStore, tmp_path: Path) -> None:
    store.create("smoke", Scopes())
    for _ in range(5):
        latest = store.rotate("smoke", overlap_seconds=0)
    db = sqlite3.connect(tmp_path / "keys.db")
    (count,) = db.execute("SELECT count(*) FROM credentials WHERE name = 'smoke'").fetchone()
    assert count <= 2  # the live key, and at most the one that ended just now
    assert store.authenticate(latest) is not None


def test_cli_update_replaces_scopes_and_the_key_keeps_working(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from claudegate_gateway.cli import main

    pepper = tmp_path / "pepper"
    pepper.write_text("p" * 32)
    pepper.chmod(0o600)
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"upstream: {{api_key_file: {pepper}}}\nkeystore: {tmp_path / 'k.db'}\npepper_file: {pepper}\n"
    )
    assert main(["keys", "create", "svc", "--config", str(config), "--rpm", "5"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["keys", "update", "svc", "--config", str(config), "--models", "claude-haiku-*", "--rpm", "9",
                 "--expires", "2099-01-01T00:00:00Z"]) == 0  # fmt: skip
    assert "keep working" in capsys.readouterr().out
    store = KeyStore(tmp_path / "k.db", "p" * 32)
    seen = store.authenticate(key)
    assert seen is not None and seen.scopes.rpm == 9 and seen.scopes.models == ("claude-haiku-*",)
    assert main(["keys", "update", "nobody", "--config", str(config)]) == 3
    assert "no client named 'nobody'" in capsys.readouterr().err
