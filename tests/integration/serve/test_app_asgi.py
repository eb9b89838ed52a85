"""The ASGI app called in-process: what a load balancer sees while the server drains.

The real server closes its listener right after SIGTERM, so ``/ready`` going false
is only observable from inside; every other behaviour is tested on a real process.
"""

from __future__ import annotations

import asyncio
import json

from batchpilot import serve


async def _call(app, method, path, body=b"", receive=None):
    sent = []

    async def whole_body():
        return {"type": "http.request", "body": body, "more_body": False}

    receive = receive or whole_body

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": []}
    await app(scope, receive, send)
    return sent[0]["status"], json.loads(sent[1]["body"])


def _double(xs):
    return [2 * x for x in xs]


def test_draining_turns_ready_false_and_refuses_new_predictions():
    async def scenario():
        app = serve.app(_double)
        await app.wait_ready()
        assert await _call(app, "GET", "/ready") == (200, _ready(True))
        assert await _call(app, "POST", "/predict", b"4") == (200, 8)
        app.begin_drain()
        status, body = await _call(app, "GET", "/ready")
        assert (status, body["ready"], body["draining"]) == (503, False, True)
        status, body = await _call(app, "POST", "/predict", b"4")
        assert status == 503 and body["error"].startswith("draining")
        await app.shutdown()
        assert app.batcher.closed

    asyncio.run(scenario())


def test_a_prediction_that_arrived_before_the_drain_is_answered():
    """Admission is decided when the request reaches the app, not once its body is in."""

    async def scenario():
        app = serve.app(_double)
        await app.wait_ready()
        rest_of_body = asyncio.get_running_loop().create_future()
        body_pending = asyncio.Event()
        parts = [{"type": "http.request", "body": b"4", "more_body": True}]

        async def receive():
            if parts:
                return parts.pop()
            body_pending.set()
            return await rest_of_body

        request = asyncio.create_task(_call(app, "POST", "/predict", receive=receive))
        await body_pending.wait()  # the request is in flight, its body still arriving
        app.begin_drain()
        rest_of_body.set_result({"type": "http.request", "body": b"2", "more_body": False})
        assert await request == (200, 84)
        status, body = await _call(app, "POST", "/predict", b"4")  # a new one is refused
        assert status == 503 and body["error"].startswith("draining")
        await app.shutdown()

    asyncio.run(scenario())


def _ready(ready):
    return {
        "ready": ready,
        "setup_done": True,
        "draining": not ready,
        "queue_size": 0,
        "critical_queue_size": 9000,
    }
