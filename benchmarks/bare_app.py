"""The floor of ``benchmarks.http_latency``: a bare FastAPI app under the same uvicorn settings.

    python -m uvicorn benchmarks.bare_app:app --port P --no-access-log

Two routes and nothing else (no middleware, no store, no model): ``GET /ping`` answers a small
JSON object; ``POST /ping`` validates a small JSON body of an event's shape and answers another.
What the engine's routes cost beyond these is the engine's own.
"""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel


class Ping(BaseModel):
    visitor_id: str
    item_id: str
    type: str
    event_id: str | None = None


app = FastAPI()


@app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


@app.post("/ping", status_code=202)
async def ping_body(body: Ping) -> dict[str, int]:
    return {"accepted": 1}
