"""The stored request fingerprint cannot be used to test guessed credentials offline."""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import text


async def test_fingerprint_is_keyed_and_replay_still_works(client, auth_headers, app):
    r = await client.put("/v1/end-users/acme", json={"name": "Acme"}, headers=auth_headers)
    assert r.status_code in (200, 201)
    body = {"end_user": "acme", "service": "stripe", "credentials": {"api_key": "sk_guessable"}}
    headers = {**auth_headers, "Idempotency-Key": "k-123e4567-e89b-12d3-a456-426614174000"}
    first = await client.post("/v1/connections", json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = await client.post("/v1/connections", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    other = await client.post(
        "/v1/connections", json={**body, "credentials": {"api_key": "sk_other"}}, headers=headers
    )
    assert other.status_code == 409

    async with app.state.engine.connect() as conn:
        stored = (await conn.execute(text("SELECT request_hash FROM idempotency_keys"))).all()
    plain = hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert stored and all(row[0] != plain for row in stored)
