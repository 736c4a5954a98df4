"""Onboarding: end-users and groups, sources, connections and their lifecycle, schema policy."""
