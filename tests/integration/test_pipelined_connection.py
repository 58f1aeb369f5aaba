"""The store's pipelined connection against a real redis-server: many reads and writes in flight
on one socket each get their own reply, and whatever goes wrong on it (scripts flushed,
connection killed, server paused, authentication, another database) ends in the right answer or
a clean StoreUnavailableError: never another visitor's profile, never an event acknowledged and
not stored."""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer

from engine.profiles import Event, StoreUnavailableError
from engine.profiles.keys import Keys
from engine.profiles.redis import RedisProfileStore


@pytest.fixture
async def admin(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, decode_responses=True)
    yield client
    await client.aclose()


def _store(url: str, **client: float) -> RedisProfileStore:
    return RedisProfileStore.from_url(url, Keys(f"t{uuid.uuid4().hex[:12]}:"), **client)


async def _visitors(store: RedisProfileStore, n: int) -> dict[str, str]:
    """``n`` visitors, each with one click on an item of their own: visitor -> item."""
    now = time.time()
    items = {f"v{i}": f"item{i}" for i in range(n)}
    await store.record([Event(f"e{v}", v, item, "click", now) for v, item in items.items()])
    return items


async def _read_in_flight_on_the_pipeline(
    store: RedisProfileStore, items: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every visitor's read at once, each getting their own profile, and every read (and the
    read script's first load) on the pipelined connection alone: redis-py is not used."""

    async def not_redis_py(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"redis-py used: {args}")

    with monkeypatch.context() as patched:
        patched.setattr(store._redis, "pipeline", not_redis_py)
        patched.setattr(store._redis, "execute_command", not_redis_py)
        replies = await asyncio.gather(*(store.context(v) for v in items))
    for (visitor, item), (profile, _) in zip(items.items(), replies, strict=True):
        assert profile.visitor_id == visitor
        assert [e.item_id for e in profile.recent] == [item]


async def test_calls_in_flight_each_get_their_own_profile(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(redis_url)
    try:
        await _read_in_flight_on_the_pipeline(store, await _visitors(store, 300), monkeypatch)
    finally:
        await store.close()


async def test_the_reads_of_one_turn_leave_in_one_send(redis_url: str) -> None:
    store = _store(redis_url)
    try:
        items = await _visitors(store, 50)
        await store.context("warm")  # connected, and the read script loaded
        pipelined = store._pipelined
        assert pipelined is not None and pipelined._protocol is not None
        socket_transport = pipelined._protocol._transport._transport  # under the coalescing
        sends: list[bytes] = []
        write = socket_transport.write

        def counted(data: bytes) -> None:
            sends.append(bytes(data))
            write(data)

        socket_transport.write = counted
        replies = await asyncio.gather(*(store.context(v) for v in items))
        assert len(sends) == 1
        assert [[e.item_id for e in profile.recent] for profile, _ in replies] == [
            [item] for item in items.values()
        ]
    finally:
        await store.close()


async def test_flushed_scripts_and_killed_connections_are_recovered(
    redis_url: str, admin: Redis
) -> None:
    store = _store(redis_url)
    try:
        items = await _visitors(store, 3)
        await store.context("v0")
        await admin.script_flush()  # NOSCRIPT: the store loads it again on that connection
        assert [e.item_id for e in (await store.context("v1"))[0].recent] == [items["v1"]]
        await admin.client_kill_filter(_type="normal", skipme=True)  # every client but admin
        for visitor in ("v2", "v0"):  # the first call falls back, the next one reconnects
            assert [e.item_id for e in (await store.context(visitor))[0].recent] == [items[visitor]]
        await admin.script_flush()
        await admin.client_kill_filter(_type="normal", skipme=True)
        click = Event("e-after", "v0", "other", "click", time.time())
        assert await store.record([click]) == [True]  # falls back, loads the scripts
        assert await store.record([click]) == [False]  # reconnected: seen before
        profile, _ = await store.context("v0")
        assert [e.item_id for e in profile.recent] == ["other", items["v0"]]
    finally:
        await store.close()


async def test_a_paused_server_is_unavailable_within_the_timeout_then_serves_again(
    redis_url: str, admin: Redis
) -> None:
    store = _store(redis_url, socket_timeout=0.2)
    try:
        items = await _visitors(store, 1)
        await store.context("v0")
        await admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        start = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            await store.context("v0")
        with pytest.raises(StoreUnavailableError):  # not acknowledged: the client retries
            await store.record([Event("e-paused", "v0", "later", "click", time.time())])
        assert time.monotonic() - start < 0.9  # each timed out; neither waited the pause
        await asyncio.sleep(1.0)
        assert [e.item_id for e in (await store.context("v0"))[0].recent] == [items["v0"]]
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await store.close()


@pytest.fixture(scope="module")
def unix_socket_url() -> Iterator[str]:
    """A private redis-server listening on a Unix socket too (a short path: the kernel bounds a
    socket's path to 107 bytes, which pytest's temporary folders can exceed)."""
    with tempfile.TemporaryDirectory(prefix="redis-") as folder:
        socket = Path(folder) / "redis.sock"
        server = RedisServer(Path(folder), options=["--unixsocket", str(socket),
                                                    "--unixsocketperm", "700"])  # fmt: skip
        server.start()
        try:
            yield f"unix://{socket}?db=2"
        finally:
            server.stop()


async def test_a_unix_socket_url_gets_the_pipelined_connection(
    unix_socket_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = _store(unix_socket_url)
    try:
        await _read_in_flight_on_the_pipeline(store, await _visitors(store, 50), monkeypatch)
        for database, holds in (("db=2", True), ("db=0", False)):  # the URL's, not 0
            client = Redis.from_url(unix_socket_url.replace("db=2", database))
            try:
                assert bool(await client.keys(f"{store.keys.prefix}*")) is holds
            finally:
                await client.aclose()
    finally:
        await store.close()


async def test_user_password_and_database_of_the_url_are_used(redis_url: str, admin: Redis) -> None:
    user, password = f"u{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await admin.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                            commands=["+@all"])  # fmt: skip
    host_port = redis_url.removeprefix("redis://").split("/")[0]
    url = f"redis://{user}:{password}@{host_port}/3"
    store = _store(url)
    try:
        items = await _visitors(store, 2)
        profile, _ = await store.context("v1")
        assert [e.item_id for e in profile.recent] == [items["v1"]]
        in_db3 = Redis.from_url(url, decode_responses=True)
        try:
            assert await in_db3.dbsize() > 0
        finally:
            await in_db3.aclose()
        assert not await admin.keys(f"{store.keys.prefix}*")  # nothing landed in database 0
        wrong = _store(f"redis://{user}:wrong@{host_port}/3")
        try:
            with pytest.raises(StoreUnavailableError):
                await wrong.context("v1")
        finally:
            await wrong.close()
    finally:
        await admin.acl_deluser(user)
        await store.close()


async def test_a_cancelled_call_leaves_no_reply_waiting_for_it(
    redis_url: str, admin: Redis
) -> None:
    """A caller cancelled while its commands wait (a request's deadline) cancels all of them:
    their replies, when they come, are dropped rather than set on futures nobody awaits (whose
    errors asyncio would log as lost), and the next call still gets its own reply."""
    store = _store(redis_url)
    mux = store._pipelined
    assert mux is not None
    try:
        assert await mux.pipeline([("PING",)]) == ["PONG"]
        await admin.execute_command("CLIENT", "PAUSE", 300, "ALL")
        call = asyncio.ensure_future(mux.pipeline([("ECHO", "a"), ("ECHO", "b")]))
        await asyncio.sleep(0.05)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        protocol = mux._protocol
        assert protocol is not None and len(protocol._waiting) == 2
        assert all(future.cancelled() for future, _ in protocol._waiting)
        await asyncio.sleep(0.35)  # the pause ends by itself
        assert await mux.pipeline([("ECHO", "c")]) == ["c"]
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await store.close()
