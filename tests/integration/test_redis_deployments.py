"""Managed Redis (TLS, password), Redis Sentinel and Redis Cluster, chosen by settings alone.

Each case starts its own private servers (tests/redis_server.py) and builds the store the way the
API does (``api.main.build_store`` from ``ApiSettings``), then records an event and reads it back.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis_server import RedisServer, running_redis, running_sentinel

from api.main import build_store
from api.settings import ApiSettings
from engine.profiles import Event, RedisProfileStore, StoreUnavailableError

PASSWORD = "s3cret-pass"


def _event(visitor: str) -> Event:
    return Event(event_id=uuid.uuid4().hex, visitor_id=visitor, item_id="sku1", type="view",
                 timestamp=1_764_950_000.0)  # fmt: skip


async def _round_trip(settings: ApiSettings) -> None:
    store = build_store(settings)
    assert isinstance(store, RedisProfileStore)
    try:
        assert await store.ping()
        event = _event(f"v-{uuid.uuid4().hex[:8]}")
        assert await store.record([event]) == [True]
        profile, _ = await store.context(event.visitor_id)
        assert [r.item_id for r in profile.recent] == ["sku1"]
        assert [e["event_id"] for e in await store.events(1)] == [event.event_id]
    finally:
        await store.close()


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl, a few ms each)."""
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.crt", "s.key", "s.csr", "s.crt")
    )
    ext = folder / "san.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for command in (
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", "2", "-subj", "/CN=test-ca"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        subprocess.run(["openssl", *map(str, command)], check=True, capture_output=True)
    return ca, cert, key


async def test_tls_url_with_password(tmp_path: Path) -> None:
    ca, cert, key = _certificates(tmp_path)
    tls_port = RedisServer(tmp_path).port  # a free port
    options = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert),
               "--tls-key-file", str(key), "--tls-ca-cert-file", str(ca),
               "--tls-auth-clients", "no"]  # fmt: skip
    server = RedisServer(tmp_path / "redis", options=options)
    server.start()
    try:
        async with Redis(port=server.port) as plain:  # the password is set once it answers
            await plain.config_set("requirepass", PASSWORD)
        url = f"rediss://:{PASSWORD}@127.0.0.1:{tls_port}/0?ssl_ca_certs={ca}"
        await _round_trip(ApiSettings(redis_url=url, key_prefix="tls:"))

        wrong = build_store(ApiSettings(redis_url=url.replace(PASSWORD, "wrong")))
        with pytest.raises(StoreUnavailableError):
            await wrong.record([_event("v1")])
        await wrong.close()
    finally:
        server.stop()


async def test_sentinel_names_the_master(tmp_path: Path) -> None:
    with (
        running_redis(tmp_path / "master") as master,
        running_sentinel(tmp_path / "sentinel", master.port, "shop") as sentinel_port,
    ):
        settings = ApiSettings(
            redis_url="redis://shop/0", redis_sentinels=f"127.0.0.1:{sentinel_port}",
            key_prefix="sentinel:",
        )  # fmt: skip
        await _round_trip(settings)
        async with Redis(port=master.port, decode_responses=True) as raw:  # it went to the master
            assert [k async for k in raw.scan_iter(match="sentinel:*")]


async def test_cluster_by_setting(redis_cluster_url: str) -> None:
    settings = ApiSettings(redis_url=redis_cluster_url, redis_cluster=True, key_prefix="cluster:")
    await _round_trip(settings)
    store = build_store(settings)
    assert isinstance(store, RedisProfileStore)
    try:  # the test cluster's masters run without the append-only file: the API warns
        assert (await store.persistence())["appendonly"] == "no"
    finally:
        await store.close()


def test_deployment_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="host:port"):
        ApiSettings(redis_url="redis://shop/0", redis_sentinels="nowhere")
    with pytest.raises(ValueError, match="exclude each other"):
        ApiSettings(redis_url="redis://a:1", redis_cluster=True, redis_sentinels="h:26379")
    with pytest.raises(ValueError, match="need PERSONALIZE_REDIS_URL"):
        ApiSettings(redis_cluster=True)
    assert ApiSettings(redis_url="redis://a:1", redis_cluster=True).shards == 16
    assert ApiSettings(redis_url="redis://a:1").shards == 1
    assert ApiSettings(redis_url="redis://a:1", redis_shards=4).shards == 4
