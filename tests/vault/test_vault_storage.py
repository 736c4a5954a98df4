"""Round trip, upsert, delete/shred, and the attacks: moved ciphertexts, flipped bits,
unknown key ids. Everything runs on the real migrated database through the app's vault."""

from __future__ import annotations

import pytest

from app.vault import DecryptionFailed, Secret, UnknownKeyId
from tests.fixtures.vault import PLAINTEXTS, get, owner, put, row_of, rows, set_columns

RT = PLAINTEXTS["refresh_token"]
A = owner("eu_alice", "connection", "con_alice", "refresh_token")
B = owner("eu_bob", "connection", "con_bob", "refresh_token")


async def test_round_trip_and_record_format(app):
    await put(app, RT, **A)
    secret = await get(app, **A)
    assert isinstance(secret, Secret)
    assert secret.reveal() == RT
    assert RT not in repr(secret)
    row = await row_of(app, "connection", "con_alice", "refresh_token")
    vault = app.state.vault
    assert row["alg"] == "A256GCM-ENV-1"
    assert row["kek_provider"] == "local"
    assert row["kek_id"] == vault.provider.active_key_id
    assert len(bytes(row["nonce"])) == 12
    assert len(bytes(row["ciphertext"])) == len(RT.encode()) + 16  # GCM tag
    assert len(bytes(row["wrapped_dek"])) == 12 + 32 + 16
    assert row["end_user_id"] == "eu_alice"


async def test_get_missing_is_none(app):
    assert await get(app, **A) is None


async def test_put_accepts_secret_and_upserts_with_fresh_data_key(app):
    await put(app, RT, **A)
    first = await row_of(app, "connection", "con_alice", "refresh_token")
    await put(app, Secret("rt-rotated-by-provider"), **A)
    second = await row_of(app, "connection", "con_alice", "refresh_token")
    assert second["id"] == first["id"]  # one row per (owner_type, owner_id, field)
    assert bytes(second["wrapped_dek"]) != bytes(first["wrapped_dek"])
    assert bytes(second["nonce"]) != bytes(first["nonce"])
    assert (await get(app, **A)).reveal() == "rt-rotated-by-provider"
    assert len(await rows(app)) == 1


async def test_same_value_twice_gives_unrelated_ciphertexts(app):
    await put(app, RT, **A)
    await put(app, RT, **B)
    a = await row_of(app, "connection", "con_alice", "refresh_token")
    b = await row_of(app, "connection", "con_bob", "refresh_token")
    assert bytes(a["ciphertext"]) != bytes(b["ciphertext"])
    assert bytes(a["wrapped_dek"]) != bytes(b["wrapped_dek"])


CIPHER_COLUMNS = ("alg", "kek_provider", "kek_id", "wrapped_dek", "nonce", "ciphertext")


@pytest.mark.parametrize(
    "victim",
    [
        pytest.param(owner("eu_alice", "connection", "con_alice2", "refresh_token"), id="owner"),
        pytest.param(owner("eu_alice", "connection", "con_alice", "access_token"), id="field"),
        pytest.param(owner("eu_bob", "connection", "con_alice3", "refresh_token"), id="end_user"),
        pytest.param(owner("eu_alice", "oauth_flow", "con_alice", "refresh_token"), id="type"),
    ],
)
async def test_ciphertext_copied_into_another_row_does_not_decrypt(app, victim):
    await put(app, RT, **A)
    await put(app, "victim-own-value", **victim)
    src = await row_of(app, "connection", "con_alice", "refresh_token")
    dst = await row_of(app, victim["owner_type"], victim["owner_id"], victim["field"])
    # The attack: copy every cryptographic column of Alice's row over the victim's row.
    await set_columns(app, dst["id"], **{c: src[c] for c in CIPHER_COLUMNS})
    with pytest.raises(DecryptionFailed) as err:
        await get(app, **victim)
    assert RT not in str(err.value)
    assert "victim-own-value" not in str(err.value)
    assert (await get(app, **A)).reveal() == RT  # the source is untouched


async def test_ciphertext_replayed_for_another_end_user_does_not_decrypt(app):
    """Same owner and field, other end-user: Alice's old record copied into the row that now
    belongs to Bob (the unique key allows one row per owner+field, so recreate it)."""
    await put(app, RT, **A)
    stolen = await row_of(app, "connection", "con_alice", "refresh_token")
    async with app.state.sessionmaker() as session, session.begin():
        await app.state.vault.delete(session, owner_type="connection", owner_id="con_alice")
    bob_same_owner = {**A, "end_user_id": "eu_bob"}
    await put(app, "bob-value", **bob_same_owner)
    dst = await row_of(app, "connection", "con_alice", "refresh_token")
    await set_columns(app, dst["id"], **{c: stolen[c] for c in CIPHER_COLUMNS})
    with pytest.raises(DecryptionFailed):
        await get(app, **bob_same_owner)
    # and a row whose end_user_id column is rewritten does not read as the new end-user
    await put(app, RT, **B)
    row = await row_of(app, "connection", "con_bob", "refresh_token")
    await set_columns(app, row["id"], end_user_id="eu_mallory")
    with pytest.raises(DecryptionFailed):
        await get(app, **{**B, "end_user_id": "eu_mallory"})


async def test_data_ciphertext_moved_under_another_rows_key_does_not_decrypt(app):
    """Keep the victim's wrapped key, swap in Alice's nonce + ciphertext."""
    await put(app, RT, **A)
    await put(app, "victim", **B)
    src = await row_of(app, "connection", "con_alice", "refresh_token")
    dst = await row_of(app, "connection", "con_bob", "refresh_token")
    await set_columns(app, dst["id"], nonce=src["nonce"], ciphertext=src["ciphertext"])
    with pytest.raises(DecryptionFailed):
        await get(app, **B)


async def test_reading_with_the_wrong_end_user_fails(app):
    await put(app, RT, **A)
    with pytest.raises(DecryptionFailed):
        await get(app, **{**A, "end_user_id": "eu_mallory"})


def _flip(data: bytes, index: int) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


@pytest.mark.parametrize(
    ("column", "index"),
    [
        ("ciphertext", 0),
        ("ciphertext", -1),  # inside the tag
        ("nonce", 5),
        ("wrapped_dek", 0),  # wrap nonce
        ("wrapped_dek", 20),  # wrapped key bytes
        ("wrapped_dek", -1),  # wrap tag
    ],
)
async def test_one_flipped_bit_fails(app, column, index):
    await put(app, RT, **A)
    row = await row_of(app, "connection", "con_alice", "refresh_token")
    await set_columns(app, row["id"], **{column: _flip(bytes(row[column]), index)})
    with pytest.raises(DecryptionFailed) as err:
        await get(app, **A)
    assert RT not in str(err.value)
    assert row["id"] in str(err.value)


async def test_truncated_and_relabelled_records_fail(app):
    await put(app, RT, **A)
    row = await row_of(app, "connection", "con_alice", "refresh_token")
    await set_columns(app, row["id"], ciphertext=bytes(row["ciphertext"])[:-1])
    with pytest.raises(DecryptionFailed):
        await get(app, **A)
    await set_columns(app, row["id"], ciphertext=row["ciphertext"], nonce=bytes(row["nonce"])[:8])
    with pytest.raises(DecryptionFailed):
        await get(app, **A)


async def test_unknown_key_id_is_a_clear_error(app):
    await put(app, RT, **A)
    row = await row_of(app, "connection", "con_alice", "refresh_token")
    await set_columns(app, row["id"], kek_id="k-retired-2019")
    with pytest.raises(UnknownKeyId) as err:
        await get(app, **A)
    assert err.value.kek_id == "k-retired-2019"
    assert "'k-retired-2019'" in str(err.value)
    assert "not configured" in str(err.value)
    assert RT not in str(err.value)


async def test_key_id_relabelled_to_another_configured_key_fails(keyring_settings, running_app):
    """A wrap under k1 presented as k2 fails: the key id is bound into the wrap's AAD."""
    async with running_app(keyring_settings("k1", "k1", "k2")) as app:
        await put(app, RT, **A)
        row = await row_of(app, "connection", "con_alice", "refresh_token")
        await set_columns(app, row["id"], kek_id="k2")
        with pytest.raises(DecryptionFailed):
            await get(app, **A)


async def test_unknown_provider_is_a_clear_error(app):
    await put(app, RT, **A)
    row = await row_of(app, "connection", "con_alice", "refresh_token")
    await set_columns(app, row["id"], kek_provider="gcpkms")
    with pytest.raises(UnknownKeyId, match="gcpkms"):
        await get(app, **A)


async def test_delete_one_field_and_whole_owner(app):
    for field in ("refresh_token", "access_token", "credentials.password"):
        await put(app, f"v-{field}", **{**A, "field": field})
    await put(app, RT, **B)
    async with app.state.sessionmaker() as session, session.begin():
        n = await app.state.vault.delete(
            session, owner_type="connection", owner_id="con_alice", field="access_token"
        )
    assert n == 1
    assert await get(app, **{**A, "field": "access_token"}) is None
    assert (await get(app, **A)).reveal() == "v-refresh_token"
    async with app.state.sessionmaker() as session, session.begin():
        n = await app.state.vault.delete(session, owner_type="connection", owner_id="con_alice")
    assert n == 2
    assert [r["owner_id"] for r in await rows(app)] == ["con_bob"]
    async with app.state.sessionmaker() as session, session.begin():
        assert (
            await app.state.vault.delete(session, owner_type="connection", owner_id="con_alice")
        ) == 0


async def test_shred_end_user_removes_all_its_secrets_and_nothing_else(app):
    await put(app, RT, **A)
    await put(app, "at", **{**A, "field": "access_token"})
    await put(app, "cv", **owner("eu_alice", "oauth_flow", "flow_1", "code_verifier"))
    await put(app, "bob", **B)
    await put(app, "cs", **owner("_platform", "oauth_app", "salesforce", "client_secret"))
    async with app.state.sessionmaker() as session, session.begin():
        assert await app.state.vault.shred_end_user(session, "eu_alice") == 3
    remaining = {(r["end_user_id"], r["owner_id"]) for r in await rows(app)}
    assert remaining == {("eu_bob", "con_bob"), ("_platform", "salesforce")}
    assert await get(app, **A) is None
    assert (await get(app, **B)).reveal() == "bob"


async def test_delete_rolls_back_with_the_callers_transaction(app):
    await put(app, RT, **A)
    with pytest.raises(RuntimeError):
        async with app.state.sessionmaker() as session, session.begin():
            await app.state.vault.delete(session, owner_type="connection", owner_id="con_alice")
            raise RuntimeError("request failed")
    assert (await get(app, **A)).reveal() == RT


async def test_unicode_and_long_values(app):
    value = "ünïcødé-🔑-" + "x" * 10_000
    await put(app, value, **A)
    assert (await get(app, **A)).reveal() == value
    await put(app, "", **B)
    assert (await get(app, **B)).reveal() == ""


async def test_readiness_reports_keys(client):
    r = await client.get("/readyz")
    body = r.json()
    assert body["checks"]["keys"] == {"ok": True}, body


async def test_readiness_fails_when_the_key_provider_fails(app, client):
    from app.vault.errors import KeyProviderUnavailable

    async def broken_wrap(dek, ctx):
        raise KeyProviderUnavailable("KMS Encrypt failed (ThrottlingException)")

    app.state.vault.provider.wrap = broken_wrap
    r = await client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["checks"]["keys"] == {
        "ok": False,
        "reason": "self-test failed: vault_key_provider_unavailable",
    }


async def test_get_put_get_in_one_session_sees_the_new_value(app):
    """One request reads a token, stores its rotated successor, and reads again."""
    vault = app.state.vault
    await put(app, "rt-1", **A)
    async with app.state.sessionmaker() as session, session.begin():
        assert (await vault.get(session, **A)).reveal() == "rt-1"
        await vault.put(session, value="rt-2", **A)
        assert (await vault.get(session, **A)).reveal() == "rt-2"
        await vault.delete(session, owner_type="connection", owner_id="con_alice")
        assert await vault.get(session, **A) is None
    assert await get(app, **A) is None
