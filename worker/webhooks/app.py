"""The receiver's HTTP face (Starlette): POST <path> for Zalo's events, GET /healthz for probes.

The body is read here against the size limit (a declared Content-Length over it is refused
before a byte is read, a chunked body as soon as it passes it); the receiver then runs in a
worker thread, since the stores are synchronous redis-py.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from worker.webhooks.receiver import WebhookReceiver
from worker.webhooks.signature import HEADER

HEALTH_PATH = "/healthz"


def create_app(receiver: WebhookReceiver, *, path: str, max_body_bytes: int) -> Starlette:
    """The ASGI app serving `receiver` on `path`."""

    async def receive(request: Request) -> Response:
        body = await _read_body(request, max_body_bytes)
        if body is None:
            answer = receiver.refuse_too_large()
        else:
            answer = await run_in_threadpool(receiver.handle, body, request.headers.get(HEADER))
        return JSONResponse(answer.body(), status_code=answer.status)

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route(path, receive, methods=["POST"]),
            Route(HEALTH_PATH, health, methods=["GET"]),
        ]
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
