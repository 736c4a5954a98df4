"""The small shared kit every domain may use: idempotency, pagination, the HTTP transport."""
