"""Sandbox counterparts — **simulations**, mounted only in sandbox mode, never in production.

* :mod:`app.sandbox.fivetran` — a stateful, in-memory simulation of the Fivetran REST API at
  ``/sandbox/fivetran``.
* :mod:`app.sandbox.oauth` — a sandbox OAuth 2.0 authorization server at ``/sandbox/oauth``.
"""
