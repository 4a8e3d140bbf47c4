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
    s = Scopes(models=("claude-haiku-*",), endpoints=("/v1/messages", "/v1/models*"), betas=("files-api-2025-04-14",))
    assert s.model_allowed("claude-haiku-4-5")
    assert not s.model_allowed("claude-opus-4-1")
    assert s.endpoint_allowed("/v1/models/claude-haiku-4-5")
    assert not s.endpoint_allowed("/v1/files")
    assert s.beta_allowed("files-api-2025-04-14") and not s.beta_allowed("other")
