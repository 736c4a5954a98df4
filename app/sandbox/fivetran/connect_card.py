"""Fivetran's Connect Card — a **simulation** for sandbox mode and tests (never production).

* ``POST /v1/connections/{id}/connect-card`` (and the legacy ``/v1/connectors/…`` alias) in
  the definition's shape: body ``{"connect_card_config": {"redirect_uri" (required, http or
  https), "hide_setup_guide", "all_fields"}}``; answer ``200 {code, message, data:
  {connector_id, connect_card: {token, uri}, connect_card_config}}``. The card is valid one
  day, like Fivetran's. Unknown connection → 404 ``NotFound_Integration``; bad body → 400
  ``InvalidInput``. Creating a connection with ``connect_card_config`` mints one too.
* ``GET /connect-card/setup?auth=<token>&…`` — a minimal card page (no API key: the end-user's
  browser opens it): the service's config fields from Fivetran's definition (secrets as
  password inputs, current values pre-filled except secrets) plus a simulated sign-in
  account, standing in for the service's own sign-in that Fivetran's real card shows.
* ``POST /connect-card/setup`` ("Save & Test") stores the fields, marks the connection
  authorized by card and runs the setup tests (they pass unless a value is ``invalid``). On
  success the card is used up and the browser goes ``303`` to the card's ``redirect_uri``
  with ``id=<connection id>`` added, as Fivetran does. On failure the page shows the failed
  test; "Leave setup" (``GET /connect-card/leave``) sends the browser back unfinished.

Only the ``redirect_uri`` stored with the card is ever redirected to, never request data.
"""

from __future__ import annotations

import html
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from app.fivetran.index import get_service

_router = APIRouter()

CARD_PATH = "/connect-card/setup"
LEAVE_PATH = "/connect-card/leave"
#: Paths the browser opens without Fivetran API credentials.
PUBLIC_PREFIX = "/connect-card/"
CARD_VALIDITY = timedelta(days=1)
_SCHEMA_FIELDS = frozenset({"schema", "schema_prefix", "table", "table_group_name"})
_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def _sim(request: Request) -> Any:
    return request.app.state.simulator


def sim_base_url(request: Request) -> str:
    """Where the simulator is reachable by the caller (its mount path included)."""
    return f"{request.url.scheme}://{request.url.netloc}{request.scope.get('root_path', '')}"


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _valid_redirect(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def attach_card(connection: dict[str, Any], config: dict[str, Any], base_url: str) -> None:
    """Mint a card for ``connection`` (``connect_card`` + ``connect_card_config`` of the view;
    the token is kept with the connection for the card page)."""
    token = secrets.token_urlsafe(24)
    cards = connection.setdefault("_cards", {})
    now = datetime.now(UTC)
    for old, card in list(cards.items()):  # forget expired cards
        if datetime.fromisoformat(card["expires_at"]) <= now:
            del cards[old]
    cards[token] = {
        "redirect_uri": config["redirect_uri"],
        "hide_setup_guide": bool(config.get("hide_setup_guide", False)),
        "expires_at": (now + CARD_VALIDITY).isoformat(),
    }
    query = {
        "redirect_uri": config["redirect_uri"],
        "auth": token,
        "hide_setup_guide": str(bool(config.get("hide_setup_guide", False))).lower(),
    }
    connection["connect_card_config"] = dict(config)
    connection["connect_card"] = {
        "token": token,
        "uri": f"{base_url.rstrip('/')}{CARD_PATH}?{urlencode(query)}",
    }


def check_card_config(body: Any) -> dict[str, Any]:
    """The ``connect_card_config`` of a request body; ``ValueError`` with Fivetran's message."""
    if not isinstance(body, dict):
        raise ValueError("Request body must be a JSON object")
    for key in body:
        if key != "connect_card_config":
            raise ValueError(f"Invalid field '{key}': unknown field")
    config = body.get("connect_card_config")
    if not isinstance(config, dict):
        raise ValueError("Field 'connect_card_config' is required")
    for key, value in config.items():
        if key not in ("redirect_uri", "hide_setup_guide", "all_fields"):
            raise ValueError(f"Invalid field 'connect_card_config.{key}': unknown field")
        if key != "redirect_uri" and not isinstance(value, bool):
            raise ValueError(f"Invalid field 'connect_card_config.{key}': must be a boolean")
    if not _valid_redirect(config.get("redirect_uri")):
        raise ValueError(
            "Field 'connect_card_config.redirect_uri' is required and must start with http or https"
        )
    return dict(config)


async def create_card(request: Request) -> Response:
    """``POST /v1/connections/{id}/connect-card`` (Basic auth and Accept checked by the gate)."""
    sim = _sim(request)
    cid = request.path_params["connection_id"]
    connection = sim.state.connections.get(cid)
    if connection is None:
        return _error(
            404, "NotFound_Integration", f"Cannot find entity 'Integration' with id '{cid}'"
        )
    try:
        body = await request.json()
        config = check_card_config(body)
    except ValueError as exc:
        message = str(exc) if str(exc) else "Request body must be JSON"
        return _error(400, "InvalidInput", message)
    attach_card(connection, config, sim_base_url(request))
    data = {
        "connector_id": cid,
        "connect_card": dict(connection["connect_card"]),
        "connect_card_config": dict(config),
    }
    return JSONResponse(
        {"code": "Success", "message": "Connection Connect Card has been created", "data": data}
    )


for _family in ("connections", "connectors"):
    _router.add_api_route(
        f"/v1/{_family}/{{connection_id}}/connect-card",
        create_card,
        methods=["POST"],
        include_in_schema=False,
    )


def _find(sim: Any, token: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    if not token:
        return None
    now = datetime.now(UTC)
    for connection in sim.state.connections.values():
        card = (connection.get("_cards") or {}).get(token)
        if card is not None and datetime.fromisoformat(card["expires_at"]) > now:
            return connection, card
    return None


def _back_to(card: dict[str, Any], connection: dict[str, Any]) -> str:
    parts = urlsplit(card["redirect_uri"])
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "id"]
    query.append(("id", connection["id"]))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), parts.fragment))


def _fields(service: str) -> list[tuple[str, Any]]:
    spec = get_service(service)
    if spec is None:
        return []
    readonly = set(spec.readonly_config)
    return [
        (name, field)
        for name, field in sorted(spec.config_fields.items())
        if name not in readonly
        and name not in _SCHEMA_FIELDS
        and field.type in ("string", "integer", "boolean")
    ]


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:40rem;margin:2rem auto}"
        "label{display:block;margin:.6rem 0 .2rem}input[type=text],input[type=password]"
        "{width:100%}.sim{background:#fff3cd;padding:.5rem}.fail{color:#a00}</style>"
        f"</head><body><p class=sim>Simulated Fivetran Connect Card (sandbox)</p>{body}"
        "</body></html>"
    )
    return HTMLResponse(doc, status_code=status, headers=_HEADERS)


def _invalid_link() -> HTMLResponse:
    return _page(
        "Connect Card link invalid",
        "<h1>This Connect Card link is invalid or expired</h1>"
        "<p>Ask the application for a new one.</p>",
        401,
    )


def _card_form(
    connection: dict[str, Any], card: dict[str, Any], token: str, failure: str | None = None
) -> HTMLResponse:
    service = connection["service"]
    config = connection.get("config") or {}
    rows = []
    for name, field in _fields(service):
        label = html.escape(field.title or name)
        ident = html.escape(name, quote=True)
        if field.type == "boolean":
            checked = " checked" if config.get(name) is True else ""
            rows.append(
                f'<label><input type=checkbox name="{ident}" value=true{checked}> {label}</label>'
            )
            continue
        kind = "password" if field.secret else "text"
        value = "" if field.secret or config.get(name) is None else str(config[name])
        rows.append(
            f'<label for="f_{ident}">{label}</label>'
            f'<input type={kind} id="f_{ident}" name="{ident}" value="{html.escape(value, True)}">'
        )
    account = html.escape(str(connection.get("_card_account") or ""), quote=True)
    guide = (
        ""
        if card.get("hide_setup_guide")
        else "<p><em>Setup guide: sign in with the account whose data should sync.</em></p>"
    )
    error = (
        f"<p class=fail role=alert>Setup test failed: {html.escape(failure)}</p>"
        f'<p><a href="leave?{urlencode({"auth": token})}">Leave setup</a></p>'
        if failure
        else ""
    )
    body = (
        f"<h1>Set up {html.escape(service)}</h1>{guide}{error}"
        "<form method=post action=setup>"
        f'<input type=hidden name=auth value="{html.escape(token, True)}">'
        '<label for="f__account">Sign-in account (simulated)</label>'
        f'<input type=text id="f__account" name="_account" value="{account}" required>'
        + "".join(rows)
        + "<p><button type=submit>Save &amp; Test</button></p></form>"
    )
    return _page(f"Set up {service}", body, 400 if failure else 200)


def _coerce(field: Any, raw: str) -> Any:
    if field.type == "integer":
        try:
            return int(raw)
        except ValueError:
            return raw
    if field.type == "boolean":
        return raw == "true"
    return raw


@_router.get(CARD_PATH, include_in_schema=False)
async def card_page(request: Request) -> Response:
    token = request.query_params.get("auth")
    found = _find(_sim(request), token)
    if found is None or token is None:
        return _invalid_link()
    connection, card = found
    return _card_form(connection, card, token)


@_router.post(CARD_PATH, include_in_schema=False)
async def card_save(request: Request) -> Response:
    """Save & Test: store the fields, run the setup tests, redirect on success."""
    sim = _sim(request)
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), True))
    token = form.get("auth")
    found = _find(sim, token)
    if found is None or token is None:
        return _invalid_link()
    connection, card = found
    config = dict(connection.get("config") or {})
    for name, field in _fields(connection["service"]):
        if field.type == "boolean":
            config[name] = name in form
        elif form.get(name):
            config[name] = _coerce(field, form[name])
    connection["config"] = config
    connection["_card_account"] = form.get("_account", "")
    connection["_card_authorized"] = True
    await sim.run_tests(connection, trust_fingerprints=False, trust_certificates=False)
    sim.webhooks.emit("edit_connector", connection)
    if connection["status"]["setup_state"] != "connected":
        failed = next(
            (t for t in connection["setup_tests"] if t["status"] in ("FAILED", "JOB_FAILED")),
            {"message": "setup incomplete"},
        )
        return _card_form(connection, card, token, failure=str(failed.get("message", "")))
    connection["_cards"].pop(token, None)
    return RedirectResponse(_back_to(card, connection), status_code=303, headers=_HEADERS)


@_router.get(LEAVE_PATH, include_in_schema=False)
async def card_leave(request: Request) -> Response:
    """Leave the card unfinished: back to the stored ``redirect_uri`` (card used up)."""
    token = request.query_params.get("auth")
    found = _find(_sim(request), token)
    if found is None or token is None:
        return _invalid_link()
    connection, card = found
    connection["_cards"].pop(token, None)
    return RedirectResponse(_back_to(card, connection), status_code=303, headers=_HEADERS)


def card_setup_test(connection: dict[str, Any]) -> dict[str, Any] | None:
    """The "Validate Login" result of a connection authorized in the card, or None when the
    card was not used (the ordinary tests apply)."""
    if not connection.get("_card_authorized"):
        return None
    account = str(connection.get("_card_account") or "")
    bad = [k for k, v in (connection.get("config") or {}).items() if v == "invalid"]
    if account == "invalid" or not account.strip():
        message = "Sign-in failed: the account is invalid (simulated)."
        return {"title": "Validate Login", "status": "FAILED", "message": message}
    if bad:
        message = f"Invalid credentials: check 'config.{bad[0]}'."
        return {"title": "Validate Login", "status": "FAILED", "message": message}
    message = "Authorized in the Connect Card (simulated)."
    return {"title": "Validate Login", "status": "PASSED", "message": message}


def router() -> APIRouter:
    """The card routes (their handlers find ``sim`` as ``app.state.simulator``)."""
    return _router
