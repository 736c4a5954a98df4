"""The two layers separately: the data layer's associated data alone rejects swaps (even with a
key provider that binds nothing), and the local wrap binds owner, key id and algorithm."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from app.vault import DecryptionFailed, LocalKeyring, Vault
from app.vault.envelope import OwnerContext, SealedSecret, decrypt_data, encrypt_data, new_dek
from app.vault.errors import VaultError
from tests.fixtures.vault import get, owner, put, row_of, set_columns

CTX = OwnerContext("eu_1", "connection", "con_1", "refresh_token")
OTHERS = [
    OwnerContext("eu_2", "connection", "con_1", "refresh_token"),
    OwnerContext("eu_1", "oauth_flow", "con_1", "refresh_token"),
    OwnerContext("eu_1", "connection", "con_2", "refresh_token"),
    OwnerContext("eu_1", "connection", "con_1", "access_token"),
    # separator games: ids that would collide under naive "a|b|c" joining
    OwnerContext("eu_1|connection", "con_1", "refresh_token", ""),
]


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.db_independent
def test_data_layer_rejects_any_other_owner(other):
    dek = new_dek()
    nonce, ct = encrypt_data(dek, "value", CTX)
    sealed = SealedSecret("A256GCM-ENV-1", "local", "k", b"", nonce, ct)
    assert decrypt_data(dek, sealed, CTX).reveal() == "value"
    with pytest.raises(DecryptionFailed):
        decrypt_data(dek, sealed, other)


@pytest.mark.db_independent
def test_unknown_format_version_is_refused():
    dek = new_dek()
    nonce, ct = encrypt_data(dek, "value", CTX)
    with pytest.raises(VaultError, match="unsupported vault record format"):
        decrypt_data(dek, SealedSecret("A256GCM-ENV-9", "local", "k", b"", nonce, ct), CTX)


@pytest.mark.parametrize("other", OTHERS)
@pytest.mark.db_independent
async def test_local_wrap_binds_owner(other):
    ring = LocalKeyring({"k1": b"\x01" * 32}, "k1")
    dek = new_dek()
    kid, blob = await ring.wrap(dek, CTX.as_dict())
    assert await ring.unwrap(kid, blob, CTX.as_dict()) == dek
    with pytest.raises(DecryptionFailed):
        await ring.unwrap(kid, blob, other.as_dict())


@pytest.mark.db_independent
async def test_local_wrap_binds_key_id_even_with_identical_key_material():
    """Two key ids holding the same bytes still cannot stand in for each other."""
    ring = LocalKeyring({"k1": b"\x01" * 32, "k2": b"\x01" * 32}, "k1")
    _, blob = await ring.wrap(new_dek(), CTX.as_dict())
    with pytest.raises(DecryptionFailed):
        await ring.unwrap("k2", blob, CTX.as_dict())


class ContextBlindKeyring(LocalKeyring):
    """A deliberately weak provider that ignores ``ctx`` (like a KMS key without context)."""

    async def wrap(self, dek: bytes, ctx: Mapping[str, str]) -> tuple[str, bytes]:
        return await super().wrap(dek, {})

    async def unwrap(self, kek_id: str, blob: bytes, ctx: Mapping[str, str]) -> bytes:
        return await super().unwrap(kek_id, blob, {})


async def test_swaps_fail_on_the_data_layer_alone(app):
    app.state.vault = Vault(ContextBlindKeyring({"blind": b"\x02" * 32}, "blind"))
    a = owner("eu_a", "connection", "con_a", "refresh_token")
    b = owner("eu_b", "connection", "con_b", "refresh_token")
    await put(app, "alice-token", **a)
    await put(app, "bob-token", **b)
    src = await row_of(app, "connection", "con_a", "refresh_token")
    dst = await row_of(app, "connection", "con_b", "refresh_token")
    cols = ("alg", "kek_provider", "kek_id", "wrapped_dek", "nonce", "ciphertext")
    await set_columns(app, dst["id"], **{c: src[c] for c in cols})
    with pytest.raises(DecryptionFailed):
        await get(app, **b)
    assert (await get(app, **a)).reveal() == "alice-token"
