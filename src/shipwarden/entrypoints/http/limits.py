"""Request body limits: one ASGI middleware that counts bytes while they stream in.

Routes used to ``await request.body()`` and then compare the length with their limit, so the
whole body was in memory first: a 400 MB chunked POST to a webhook, with no signature, took the
server from 196 MB to 931 MB RSS.  ``BodyLimit`` sits in front of every route and answers
**413** before the application buffers more than the route's limit:

* a ``Content-Length`` over the limit is refused up front — the application never runs and not
  one body byte is read;
* a body without one (``Transfer-Encoding: chunked``) is counted chunk by chunk as the
  application reads it; the read that crosses the limit raises inside the application, and the
  middleware answers 413 in its place (uvicorn then discards the rest of the body as it arrives,
  without keeping it).

Each 413 is audited through the app's ``RefusalLog`` (``http.refused``, bounded per source).
Limits are per path (``ROUTE_LIMITS``); every other request may carry ``DEFAULT_LIMIT``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DEFAULT_LIMIT", "ROUTE_LIMITS", "BodyLimit", "RefuseHook"]

MiB = 1024 * 1024
DEFAULT_LIMIT = 1 * MiB
"""JSON API bodies (logins, users, tokens, deployments, approvals) are a few hundred bytes."""
ROUTE_LIMITS: dict[str, int] = {
    "/webhooks/github": 25 * MiB,  # GitHub does not send payloads over 25 MB
    "/webhooks/circleci": 25 * MiB,
    "/evidence": 20 * MiB,  # services.changes.MAX_EVIDENCE_BYTES
    "/k8s/audit": 10 * MiB + 64 * 1024,  # the apiserver's --audit-webhook-truncate-max-batch-size, plus slack
    "/alerting/webhook": 16 * MiB,  # Alertmanager sends a whole group (max_alerts 0: all of it)
    "/api/v2/alerts": 16 * MiB,  # Prometheus batches up to 64 alerts (--alertmanager.notification-queue)
}

RefuseHook = Callable[[Scope, int, dict[str, Any]], None]
"""Called (in a worker thread) with the scope, the status and the detail of each refusal."""


class _TooLarge(Exception):
    def __init__(self, received: int) -> None:
        self.received = received


class BodyLimit:
    """ASGI middleware: 413 for a body over its route's limit, counted while streaming."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        on_refuse: RefuseHook | None = None,
        default: int = DEFAULT_LIMIT,
        routes: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.on_refuse = on_refuse
        self.default = default
        self.routes = dict(ROUTE_LIMITS if routes is None else routes)

    def limit_for(self, path: str) -> int:
        return self.routes.get(path.rstrip("/") or "/", self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared == -1:
            await self._refuse(scope, send, 400, {"reason": "malformed Content-Length header"})
            return
        if declared is not None and declared > limit:
            await self._refuse(scope, send, 413, {"limit": limit, "content_length": declared})
            return

        received = 0
        started = False  # the application began a response
        refused = False  # the 413 was sent in its place

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge(received)
            return message

        async def guarded_send(message: Message) -> None:
            # FastAPI turns any error while reading a JSON body into its own 400; once the limit
            # was crossed, that answer is replaced by the 413 (and the application's is dropped).
            nonlocal started, refused
            if refused:
                return
            if received > limit and message["type"] == "http.response.start":
                refused = True
                await self._refuse(scope, send, 413, {"limit": limit, "received_at_least": received})
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _TooLarge as exc:
            if started or refused:  # pragma: no cover - no route answers before reading its body
                return
            await self._refuse(scope, send, 413, {"limit": limit, "received_at_least": exc.received})

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: dict[str, Any]) -> None:
        if status == 413:
            message = f"request body is larger than {detail['limit']} bytes, the limit of {scope['path']}"
        else:
            message = detail["reason"]
        if self.on_refuse is not None:
            await run_in_threadpool(self.on_refuse, scope, status, {**detail, "reason": message})
        body = json.dumps({"detail": message}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _content_length(scope: Scope) -> int | None:
    """The declared length; ``None`` if absent, ``-1`` if malformed or repeated with different values."""
    values = {v for k, v in scope["headers"] if k == b"content-length"}
    if not values:
        return None
    if len(values) > 1:
        return -1
    raw = values.pop().strip()
    if not raw.isdigit() or len(raw) > 18:
        return -1
    return int(raw)
