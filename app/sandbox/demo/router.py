"""Routes of the sandbox demo: the page, its two static files, and its API key."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from app.errors import NotFound
from app.sandbox.demo.guard import require_loopback, require_same_origin
from app.sandbox.demo.keys import DemoKeyHolder

STATIC = Path(__file__).resolve().parent / "static"
_ASSETS = {"demo.js": "text/javascript; charset=utf-8", "demo.css": "text/css; charset=utf-8"}
# The page runs only its own script and talks only to this origin.
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}

router = APIRouter(
    prefix="/sandbox/demo", include_in_schema=False, dependencies=[Depends(require_loopback)]
)


@router.get("")
async def demo_page() -> Response:
    return FileResponse(
        STATIC / "index.html", media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS
    )


@router.get("/static/{name}")
async def demo_asset(name: str) -> Response:
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"No demo asset '{name}'")
    return FileResponse(STATIC / name, media_type=media_type, headers=_PAGE_HEADERS)


@router.post("/key", dependencies=[Depends(require_same_origin)])
async def demo_key(request: Request) -> Response:
    """The page's demo-scoped API key (read/write, end-users ``demo-*`` only)."""
    holder: DemoKeyHolder = request.app.state.sandbox_demo_keys
    made = await holder.get(request.app.state.sessionmaker)
    return JSONResponse(
        {
            "key": made.key,
            "key_id": made.key_id,
            "scopes": made.scopes,
            "end_user_prefix": made.end_user_prefix,
        },
        headers={"Cache-Control": "no-store"},
    )
