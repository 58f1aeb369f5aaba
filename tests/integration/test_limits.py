"""Limits: what one client may send, and that slow or huge clients cannot take the server down.

The request limits (body, batch, k, offset, ids, repeated parameters) are checked in-process;
the connection limits against ``personalize serve`` in a subprocess, as it is deployed, with a
short request deadline so the slow clients are dropped within the test's time.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import ApiClient, Served, raw_clients, serve, serving

from api.cli import plan
from api.server import PROTOCOL
from api.settings import ApiSettings

KEY = "limits-key"
AUTH = {"X-API-Key": KEY}
TIMEOUT = 2.0  # the server's request deadline here (default 10 s)
MAX_CONNECTIONS = 24
PROMPT = 1.0  # seconds: "answered promptly" (well within TIMEOUT) while slow clients hang on


# --- request limits, in-process ------------------------------------------------------------------


@pytest.fixture
async def client(small_shop: Path) -> AsyncIterator[ApiClient]:
    settings = ApiSettings(
        models_dir=small_shop, api_keys=[KEY], watch_seconds=0, max_batch=10, max_body_bytes=4096
    )
    async with serving(settings) as c:
        yield c


def _events(n: int) -> list[dict[str, str]]:
    return [{"visitor_id": "v1", "item_id": f"sku{i}", "type": "view"} for i in range(n)]


def _many(name: str, n: int) -> list[tuple[str, str]]:
    return [("visitor_id", "v1"), *((name, f"c{i}") for i in range(n))]


LIMITS_422 = [
    ("/v1/recommendations", [("visitor_id", "v1"), ("k", "101")], ["query", "k"]),
    ("/v1/recommendations", [("visitor_id", "v1"), ("offset", "1001")], ["query", "offset"]),
    ("/v1/recommendations", [("visitor_id", "v" * 129)], ["query", "visitor_id"]),
    ("/v1/recommendations", [("visitor_id", "v1"), ("context_item", "a/b")],
     ["query", "context_item"]),
    ("/v1/recommendations", _many("include_category", 101), ["query", "include_category"]),
    ("/v1/recommendations", _many("pin", 101), ["query", "pin"]),
    ("/v1/recommendations", _many("boost", 101), ["query", "boost"]),
    ("/v1/recommendations", [("visitor_id", "v1"), ("include_category", "c" * 129)],
     ["query", "include_category", 0]),
    ("/v1/trending", [("k", "0")], ["query", "k"]),
    (f"/v1/items/{'i' * 129}/similar", [], ["path", "item_id"]),
    ("/v1/segments/loyal/customers", [("limit", "10001")], ["query", "limit"]),
    (f"/v1/segments/{'s' * 65}/customers", [], ["path", "segment"]),
]  # fmt: skip


@pytest.mark.parametrize(("url", "params", "loc"), LIMITS_422)
async def test_limits_refused_with_422_naming_the_field(
    client: httpx.AsyncClient, url: str, params: list[tuple[str, str]], loc: list[Any]
) -> None:
    response = await client.get(url, params=params)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]


TYPE_CONFUSION = [
    ("POST", "/v1/events", {"visitor_id": "v1", "item_id": "sku1", "type": "view",
                            "timestamp": True}, ["body", "event", "timestamp"]),
    ("POST", "/v1/events", {"visitor_id": 7, "item_id": "sku1", "type": "view"},
     ["body", "event", "visitor_id"]),
    ("PUT", "/v1/visitors/v1/consent", {"personalization": "yes"}, ["body", "personalization"]),
    ("PUT", "/v1/visitors/v1/consent", {"personalization": 1}, ["body", "personalization"]),
    ("PUT", "/v1/visitors/v1/consent", {"personalization": False, "timestamp": True},
     ["body", "timestamp"]),
    ("PUT", "/v1/items/availability", {"item_ids": ["sku1"], "available": "false"},
     ["body", "available"]),
]  # fmt: skip


@pytest.mark.parametrize(("method", "url", "body", "loc"), TYPE_CONFUSION)
async def test_json_fields_take_their_own_type_only(
    client: httpx.AsyncClient, method: str, url: str, body: dict[str, Any], loc: list[Any]
) -> None:
    response = await client.request(method, url, json=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]


async def test_body_and_batch_limits_refused_with_413_naming_the_limit(
    client: httpx.AsyncClient,
) -> None:
    batch = await client.post("/v1/events", json=_events(11), headers=AUTH)
    assert batch.status_code == 413
    assert batch.json()["detail"] == "11 events in one request; at most 10"
    body = await client.post("/v1/events", json=_events(100), headers=AUTH)
    assert body.status_code == 413
    assert body.json()["detail"] == "request body exceeds 4096 bytes"
    ids = {"item_ids": [f"sku{i}" for i in range(11)], "available": False}
    availability = await client.put("/v1/items/availability", json=ids, headers=AUTH)
    assert availability.status_code == 413
    assert availability.json()["detail"] == "11 item ids in one request; at most 10"
    # At the limits, accepted.
    assert (await client.post("/v1/events", json=_events(10), headers=AUTH)).status_code == 202
    ok = await client.get("/v1/recommendations", params=_many("pin", 100))
    assert ok.status_code == 200


# --- connection limits, against the server -------------------------------------------------------


@pytest.fixture(scope="module")
def server(small_shop: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    options = ["--api-key", KEY, "--request-timeout", str(TIMEOUT),
               "--max-connections", str(MAX_CONNECTIONS)]  # fmt: skip
    with serve(small_shop, tmp_path_factory.mktemp("limits"), options) as served:
        yield served


@pytest.fixture(scope="module")
def other(server: Served) -> Iterator[httpx.Client]:
    """Another client of the server: one that behaves."""
    with httpx.Client(base_url=server.url, timeout=5.0) as client:
        yield client


def _prompt_get(other: httpx.Client, path: str = "/healthz") -> httpx.Response:
    """The other client's request; it must be answered within PROMPT seconds."""
    start = time.monotonic()
    response = other.get(path)
    elapsed = time.monotonic() - start
    assert elapsed < PROMPT, f"{path} took {elapsed:.2f} s"
    return response


def _post_head(extra: str) -> bytes:
    return (f"POST /v1/events HTTP/1.1\r\nHost: shop\r\nX-API-Key: {KEY}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n\r\n").encode()  # fmt: skip


def test_slow_clients_are_dropped_and_others_answered_promptly(
    server: Served, other: httpx.Client
) -> None:
    # Three connect and send nothing; three send a header that never ends, a byte at a time;
    # three send a whole head, then a body a byte at a time that never reaches its length.
    with raw_clients(server, 9) as slow:
        trickling = slow[3:]
        for client in slow[3:6]:
            client.send(b"GET /healthz HTTP/1.1\r\nHost: shop\r\nX-Slow: ")
        for client in slow[6:]:
            client.send(_post_head("Content-Length: 4096") + b"[")
        start = time.monotonic()
        while time.monotonic() - start < 3 * TIMEOUT and not all(c.poll() for c in slow):
            for client in trickling:
                client.send(b"z")
            assert _prompt_get(other).status_code == 200
            if time.monotonic() - start < TIMEOUT / 2:
                assert not any(c.poll() for c in slow)  # a slow request has its time
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        assert all(c.closed for c in slow), "slow connections were not dropped"
        assert TIMEOUT * 0.8 < elapsed < TIMEOUT + 2 * PROMPT
        for client in slow:
            assert client.received.startswith(b"HTTP/1.1 408 "), client.received
    assert _prompt_get(other, "/readyz").status_code == 200
    assert "Traceback" not in server.log.read_text()  # the app saw a disconnect, not a failure


def test_oversized_head_and_body_are_refused(server: Served, other: httpx.Client) -> None:
    with raw_clients(server, 3) as (big_head, declared, streamed):
        big_head.send(b"GET /healthz HTTP/1.1\r\nHost: shop\r\nX-Big: " + b"a" * 65536)
        assert big_head.wait_closed(5).startswith(b"HTTP/1.1 431 ")

        declared.send(_post_head("Content-Length: 104857600"))  # 100 MiB announced
        assert declared.wait_closed(5).startswith(b"HTTP/1.1 413 ")

        streamed.send(_post_head("Transfer-Encoding: chunked"))  # counted as it arrives
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        sent = 0
        while sent < 1024 and streamed.send(chunk) and not streamed.poll():
            sent += 1
        assert sent < 1024  # refused and dropped long before 64 MiB
        assert streamed.wait_closed(5).startswith(b"HTTP/1.1 413 ")
    assert _prompt_get(other).status_code == 200


def test_connections_are_bounded_and_freed_by_the_deadline(
    server: Served, other: httpx.Client
) -> None:
    with raw_clients(server, MAX_CONNECTIONS) as held:
        time.sleep(0.1)  # let the server accept them all
        refused = httpx.get(server.url + "/healthz", timeout=5.0)
        assert refused.status_code == 503  # over the bound: refused at once, not queued
        for client in held:
            assert client.wait_closed(TIMEOUT + 2).startswith(b"HTTP/1.1 408 ")
    assert _prompt_get(other).status_code == 200


def _responses(received: bytes) -> list[tuple[int, Any]]:
    """The (status, JSON body) of each response in a connection's bytes, in order."""
    out = []
    while received:
        head, _, rest = received.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(fields["content-length"])
        out.append((int(lines[0].split()[1]), json.loads(rest[:length])))
        received = rest[length:]
    return out


def test_pipelined_requests_are_answered_whole_and_in_order(server: Served) -> None:
    # Sent in one packet: the server holds each response's writes to send them as one, and
    # must neither reorder nor drop any of them, nor the last one before closing.
    requests = [
        "GET /v1/recommendations?visitor_id=v-pipe&k=3 HTTP/1.1\r\nHost: shop\r\n\r\n",
        "GET /v1/recommendations?visitor_id=no/slash HTTP/1.1\r\nHost: shop\r\n\r\n",
        "GET /healthz HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n",
    ]
    with raw_clients(server, 1) as (client,):
        client.send("".join(requests).encode())
        answers = _responses(client.wait_closed(5))
    assert [status for status, _ in answers] == [200, 422, 200]
    assert answers[0][1]["visitor_id"] == "v-pipe" and len(answers[0][1]["items"]) == 3
    assert answers[1][1]["detail"][0]["loc"] == ["query", "visitor_id"]


def test_serve_hands_the_bounds_to_uvicorn(small_shop: Path) -> None:
    environ = {"PERSONALIZE_MAX_HEADER_BYTES": "8192", "PERSONALIZE_BACKLOG": "64"}
    served = plan(models_dir=small_shop, max_connections=7, request_timeout=2.5, environ=environ)
    assert served.uvicorn["http"] == PROTOCOL == "api.server:BoundedHttpToolsProtocol"
    assert served.uvicorn["limit_concurrency"] == 7
    assert served.uvicorn["h11_max_incomplete_event_size"] == 8192
    assert served.uvicorn["backlog"] == 64
    assert served.environ["PERSONALIZE_REQUEST_TIMEOUT_SECONDS"] == "2.5"  # read by each worker
    with pytest.raises(ValueError, match="log-level"):
        plan(models_dir=small_shop, log_level="trace", environ={})  # would log the keys
