"""Hostile requests and models against a real ``batchpilot serve`` process (issue 20):
JSON objects, ``SystemExit`` from predict, a blocking model, oversized bodies, and the
small things a client sees (error texts, ``Allow``, big integers).

The models are in ``hostile_models.py``.
"""

from __future__ import annotations

import concurrent.futures
import json
import signal
import socket

import pytest

HOST = "127.0.0.1"

BIG = 2**70 + 1  # beyond orjson's 64-bit integers, and not a float's value


def _in_flight(server, n):
    return lambda: server.stats()["in_flight"] >= n


def _raw_exchange(port: int, head: bytes, parts: list[bytes]) -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` and ``parts`` on one connection, then read the answer until the
    server closes it: (status, headers, body)."""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.sendall(head)
        for part in parts:
            sock.sendall(part)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    header_block, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = header_block.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
    return int(status_line.split()[1]), headers, body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


# -- item 1: JSON objects --------------------------------------------------------------


def test_a_json_object_reaches_predict_as_that_object(serve):
    server = serve("hostile_models:double_a")
    reply = server.predict({"a": 3})
    assert (reply.status, reply.json()) == (200, {"y": 6})


def test_concurrent_objects_with_different_keys_keep_every_field(serve):
    server = serve(
        "hostile_models:slow_identity", "--max-batch-size", "8",
        env={"SERVE_TEST_DELAY": "2.0"},
    )  # fmt: skip
    payloads = [{"a": 1}, {"a": 2, "b": 3}, {"b": 4}, {"c": {"d": 5}}, {"a": 6, "b": [7]}]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        held = pool.submit(server.predict, "hold")
        server.wait_until(lambda: "run hold" in server.log_lines(), what="the first batch")
        replies = [pool.submit(server.predict, payload) for payload in payloads]
        server.wait_until(_in_flight(server, 6), what="five queued requests")
        assert not held.done()  # so the five wait together and form one batch
        assert held.result(10).json() == "hold"
        assert [r.result(10).json() for r in replies] == payloads
    assert server.stats()["batcher"]["batches"] == 2


# -- item 2: SystemExit / KeyboardInterrupt from predict --------------------------------


@pytest.mark.parametrize("target", ["hostile_models:exits", "hostile_models:aexits"])
def test_system_exit_from_predict_is_a_500_and_the_server_goes_on(serve, target):
    server = serve(target)
    for item, cause in (("exit", "SystemExit(3)"), ("interrupt", "KeyboardInterrupt()")):
        reply = server.predict(item)
        assert reply.status == 500
        assert reply.headers["content-type"] == "application/json"
        assert cause in reply.json()["error"]
        assert server.process.poll() is None
    assert server.predict("fine").json() == "fine"
    assert server.get("/health").status == 200


# -- item 3: a plain def never runs on the event loop -----------------------------------


def test_a_blocking_model_leaves_health_and_deadlines_served(serve):
    server = serve("hostile_models:slow_sync", "--timeout", "0.5", env={"SERVE_TEST_DELAY": "4.0"})
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        first = pool.submit(server.predict, "first")  # the first batch: inline before
        server.wait_until(lambda: "run first" in server.log_lines(), what="the batch")
        assert server.get("/health").status == 200
        late = first.result(10)
        assert "done first" not in server.log_lines()  # both answered while it ran
    assert late.status == 504
    assert "deadline of 0.5 s" in late.json()["error"]
    assert server.stats()["batcher"]["placement"] == "thread"


def test_sigterm_during_a_blocking_batch_answers_every_waiting_client(serve):
    server = serve(
        "hostile_models:slow_sync", "--max-batch-size", "1", env={"SERVE_TEST_DELAY": "1.0"}
    )
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        first = pool.submit(server.predict, "first")
        server.wait_until(lambda: "run first" in server.log_lines(), what="the batch")
        waiting = [pool.submit(server.predict, f"w{i}") for i in range(3)]
        server.wait_until(_in_flight(server, 4), what="three waiting requests")
        assert "done first" not in server.log_lines()  # admitted while the batch ran
        server.process.send_signal(signal.SIGTERM)
        replies = [f.result(20) for f in [first, *waiting]]
    assert [r.status for r in replies] == [200] * 4
    assert server.process.wait(20) == 0


# -- item 6: request size limit ----------------------------------------------------------


def test_a_body_over_max_body_bytes_is_413_before_it_is_read(serve):
    server = serve("hostile_models:identity", "--max-body-bytes", "100000")
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    # a declared length over the limit: answered after 1 KB of a 50 MB body
    status, headers, body = _raw_exchange(
        server.port, head + b"Content-Length: 50000000\r\n\r\n", [b"[" + b"1," * 500]
    )
    assert status == 413 and headers["connection"] == "close"
    assert "over 100000 bytes" in json.loads(body)["error"]
    # a chunked body: answered once 110 KB have come, with no end of the body sent
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n"
    status, headers, body = _raw_exchange(server.port, chunked, [_chunk(b" " * 10_000)] * 11)
    assert status == 413 and headers["connection"] == "close"
    # a chunked body under the limit is served
    items = b"[" + b",".join([b"1"] * 40_000) + b"]"
    status, _, body = _raw_exchange(
        server.port,
        chunked.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
        [_chunk(items[:50_000]), _chunk(items[50_000:]), b"0\r\n\r\n"],
    )
    assert status == 200 and json.loads(body) == [1] * 40_000
    assert server.predict([1, 2]).json() == [1, 2]


# -- cosmetic, on one server with the defaults ----------------------------------------------


def test_defaults_objects_big_integers_and_readable_errors(serve):
    server = serve("hostile_models:identity")
    # item 1: the identity answers the object, not its first key
    assert server.predict({"a": 3}).json() == {"a": 3}
    # integers beyond 64 bits come back exactly; long decimals stay floats
    for value in (BIG, -BIG, {"n": [BIG, 1]}, 0.12345678901234567890123):
        reply = server.predict(value)
        assert reply.status == 200 and reply.json() == value
        assert type(reply.json()) is type(value)
    assert server.post("/predict", b"[NaN]").status == 422
    # the default body limit (16 MiB) is checked on the headers alone
    head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (17 * 2**20)
    status, _, body = _raw_exchange(server.port, head, [])
    assert status == 413 and "over 16777216 bytes" in json.loads(body)["error"]
    # a bad header value is quoted as text, not as a Python bytes repr
    error = server.predict(1, {"X-Priority": "urgent"}).json()["error"]
    assert error == "X-Priority must be high or normal, got 'urgent'"
    # 405 says what is allowed
    assert server.get("/predict").headers["allow"] == "POST"
    assert server.post("/health", b"").headers["allow"] == "GET, HEAD"


def test_an_exception_whose_str_raises_is_a_json_500(serve):
    server = serve("hostile_models:unprintable")
    reply = server.predict(1)
    assert reply.status == 500
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"].startswith("Unprintable: ")


def test_max_body_bytes_must_be_a_positive_int():
    from batchpilot.serve import ServeApp

    for bad, error in ((0, ValueError), (True, TypeError), (1.5, TypeError)):
        with pytest.raises(error, match="max_body_bytes"):
            ServeApp(len, max_body_bytes=bad)
