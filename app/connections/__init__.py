"""Connections: creation, lifecycle, actions, states, schema policy, and their sync state from
Fivetran's webhooks and reconciliation."""
