"""The floor: a bare FastAPI app on the service's stack (uvicorn, SQLAlchemy async, the same
engine factory and database), with no middleware, no authentication and no logging.

``GET /floor/none`` answers a constant JSON body (the cost of the HTTP stack alone);
``GET /floor/connections/{id}`` reads one ``connections`` row by primary key in one
transaction and returns some of its columns (the least a status read can cost);
``GET /floor/connections?end_user=`` reads one end-user's connections (joined with the
end-user, ordered by id, 50 at most) the same way (the least a list page can cost).

Run: ``python -m bench.floor_app --port P`` with ``DATABASE_URL`` set as for the service.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI, HTTPException
from sqlalchemy import select

from app.connections.models import Connection
from app.db import create_engine, create_sessionmaker, import_all_models
from app.end_users.models import EndUser


def create_floor_app(url: str) -> FastAPI:
    import_all_models()
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(url)
        state["maker"] = create_sessionmaker(engine)
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan, openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/floor/none")
    async def none() -> dict[str, Any]:
        return {"id": "con_floor", "state": "connected"}

    @app.get("/floor/connections/{connection_id}")
    async def one(connection_id: str) -> dict[str, Any]:
        async with state["maker"]() as session, session.begin():
            row = await session.scalar(select(Connection).where(Connection.id == connection_id))
            if row is None:
                raise HTTPException(404)
            return {
                "id": row.id,
                "service": row.service,
                "state": row.state,
                "fivetran_connection_id": row.fivetran_connection_id,
                "config": row.config,
                "created_at": row.created_at,
            }

    @app.get("/floor/connections")
    async def page(end_user: str) -> dict[str, Any]:
        async with state["maker"]() as session, session.begin():
            rows = await session.execute(
                select(Connection, EndUser)
                .join(EndUser, EndUser.id == Connection.end_user_id)
                .where(EndUser.external_id == end_user)
                .order_by(Connection.id)
                .limit(51)
            )
            return {
                "items": [
                    {
                        "id": c.id,
                        "end_user": e.external_id,
                        "service": c.service,
                        "state": c.state,
                        "fivetran_connection_id": c.fivetran_connection_id,
                        "config": c.config,
                        "created_at": c.created_at,
                    }
                    for c, e in rows.all()[:50]
                ]
            }

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url.split("://", 1)[1]
    uvicorn.run(
        create_floor_app(url),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
