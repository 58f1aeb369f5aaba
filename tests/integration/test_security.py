"""Auth, logs, CORS and security headers, each checked against what the app itself declares.

The keyed routes are enumerated from the app's OpenAPI document (every write, every admin
route), so a new route cannot be left open by forgetting a list here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import ApiClient, serve, serving
from pydantic import ValidationError

from api.main import create_app
from api.routes import common
from api.settings import ApiSettings
from benchmarks.servers import free_port

KEY, OTHER_KEY = "sec-key-Qx81", "sec-key-Zr42"
WRONG_KEY = "wrong-key-Mv07"
SECRETS = (KEY, OTHER_KEY, WRONG_KEY)
ORIGIN = "https://shop.example"
WRITE_METHODS = {"post", "put", "patch", "delete"}


def _document(**settings: Any) -> dict[str, Any]:
    """The OpenAPI document of an app configured with keys (building it loads no model)."""
    app = create_app(ApiSettings(models_dir=Path("unused"), api_keys=[KEY], **settings))
    document: dict[str, Any] = app.openapi()
    return document


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref is None:
        return schema
    resolved: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[1]]
    return resolved


def _example_request(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    """A valid request for the operation, from the examples the document carries."""
    operation = document["paths"][path][method]
    url, query = path, {}
    for parameter in operation.get("parameters", ()):
        if parameter["in"] == "path" or parameter.get("required"):
            value = next(iter(parameter["examples"].values()))["value"]
            if parameter["in"] == "path":
                url = url.replace("{" + parameter["name"] + "}", str(value))
            else:
                query[parameter["name"]] = value
    request: dict[str, Any] = {"method": method.upper(), "url": url, "params": query}
    if "requestBody" in operation:
        content = operation["requestBody"]["content"]["application/json"]
        if "examples" in content:
            request["json"] = next(iter(content["examples"].values()))["value"]
        else:
            request["json"] = _resolve(document, content["schema"])["examples"][0]
    return request


DOCUMENT = _document()
KEYED = sorted(
    (path, method)
    for path, methods in DOCUMENT["paths"].items()
    for method, operation in methods.items()
    if method in WRITE_METHODS or "admin" in operation.get("tags", ())
)
READS = sorted(
    (path, method)
    for path, methods in DOCUMENT["paths"].items()
    for method in methods
    if method == "get" and path.startswith("/v1/")
)


def test_the_enumeration_finds_every_write() -> None:
    """Guards the enumeration itself: the writes known today are all in it."""
    assert {("/v1/events", "post"), ("/v1/items/availability", "put"),
            ("/v1/visitors/{visitor_id}", "delete"), ("/v1/visitors/{visitor_id}/consent", "put"),
            ("/v1/admin/reload", "post")} <= set(KEYED)  # fmt: skip
    for path, method in KEYED:
        assert DOCUMENT["paths"][path][method].get("security"), f"{method} {path} is not keyed"


@pytest.fixture
async def keyed(small_shop: Path) -> Any:
    settings = ApiSettings(models_dir=small_shop, api_keys=[KEY, OTHER_KEY], watch_seconds=0)
    async with serving(settings) as client:
        yield client


async def _each_key(client: httpx.AsyncClient, request: dict[str, Any]) -> list[int]:
    """Status codes without a key, with a wrong key, then with each right key."""
    codes = []
    for key in (None, WRONG_KEY, KEY, OTHER_KEY):
        headers = {} if key is None else {"X-API-Key": key}
        response = await client.request(**request, headers=headers)
        assert not any(secret in response.text for secret in SECRETS)  # never echoed
        codes.append(response.status_code)
    return codes


@pytest.mark.parametrize(("path", "method"), KEYED)
async def test_every_write_needs_a_right_key(keyed: ApiClient, path: str, method: str) -> None:
    missing, wrong, *right = await _each_key(keyed, _example_request(DOCUMENT, path, method))
    assert (missing, wrong) == (401, 403)
    assert all(200 <= code < 300 for code in right), right


async def test_reads_need_a_key_when_configured(small_shop: Path) -> None:
    settings = ApiSettings(
        models_dir=small_shop, api_keys=[KEY], read_requires_key=True, watch_seconds=0
    )
    document = _document(read_requires_key=True)
    async with serving(settings) as client:
        for path, method in READS:
            assert document["paths"][path][method].get("security"), path
            missing, wrong, right, _ = await _each_key(
                client, _example_request(document, path, method)
            )
            assert (missing, wrong, right) == (401, 403, 200), path
        assert (await client.get("/healthz")).status_code == 200  # probes stay open


# --- logs ----------------------------------------------------------------------------------------


async def _exercise_keys(client: httpx.AsyncClient) -> None:
    """Every keyed operation and every read, with no key, a wrong key and right keys."""
    for path, method in [*KEYED, *READS]:
        await _each_key(client, _example_request(DOCUMENT, path, method))


async def test_keys_never_reach_the_app_logs(
    small_shop: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(common, "_last_logged", {})  # no rate limit left from earlier tests
    # A store that fails logs its errors: the Redis password must stay out of them too.
    password = "redis-pass-Hk55"
    settings = ApiSettings(
        models_dir=small_shop,
        api_keys=[KEY, OTHER_KEY],
        redis_url=f"redis://:{password}@127.0.0.1:{free_port()}/0",
        watch_seconds=0,
    )
    async with serving(settings) as client:
        await _exercise_keys(client)
    assert "profile store unavailable" in caplog.text  # the logs were captured
    for secret in (*SECRETS, password):
        assert secret not in caplog.text


async def test_keys_never_reach_the_server_logs(
    small_shop: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn at DEBUG with the access log on: request lines are logged, headers are not."""
    monkeypatch.setenv("PERSONALIZE_API_KEYS", f"{KEY},{OTHER_KEY}")  # as deployed: not argv
    with serve(small_shop, tmp_path, ["--access-log", "--log-level", "debug"]) as served:
        async with httpx.AsyncClient(base_url=served.url) as client:
            await _exercise_keys(client)
    log = served.log.read_text()
    assert '"POST /v1/events HTTP/1.1" 401' in log and '"POST /v1/events HTTP/1.1" 403' in log
    assert '"POST /v1/events HTTP/1.1" 202' in log
    for secret in SECRETS:
        assert secret not in log


# --- CORS ----------------------------------------------------------------------------------------


def _preflight(method: str = "POST", headers: str = "content-type,x-api-key") -> dict[str, str]:
    return {
        "Origin": ORIGIN,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_cors_lets_only_the_storefront_in(small_shop: Path) -> None:
    settings = ApiSettings(models_dir=small_shop, cors_origins=[ORIGIN], watch_seconds=0)
    async with serving(settings) as client:
        preflight = await client.options("/v1/events", headers=_preflight())
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
        assert "Origin" in preflight.headers["vary"]
        # No cookies, no HTTP auth: the browser is never told to send credentials.
        assert "access-control-allow-credentials" not in preflight.headers

        for refused in (
            {**_preflight(), "Origin": "https://evil.example"},
            _preflight(method="PATCH"),
            _preflight(headers="authorization"),
        ):
            answer = await client.options("/v1/events", headers=refused)
            assert answer.status_code == 400, refused
            assert answer.headers.get("access-control-allow-origin") != "https://evil.example"

        page = await client.get("/v1/trending", headers={"Origin": ORIGIN})
        assert page.headers["access-control-allow-origin"] == ORIGIN
        assert page.headers["access-control-expose-headers"] == "Retry-After"
        assert "Origin" in page.headers["vary"]  # shared caches keep answers per origin
        other = await client.get("/v1/trending", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers

    no_origins = ApiSettings(models_dir=small_shop, watch_seconds=0)
    async with serving(no_origins) as client:
        preflight = await client.options("/v1/events", headers=_preflight())
        assert "access-control-allow-origin" not in preflight.headers


@pytest.mark.parametrize(
    "origin", ["*", "https://shop.example/", "https://shop.example/path", "shop.example"]
)
def test_cors_origins_must_be_exact_origins(origin: str) -> None:
    with pytest.raises(ValidationError, match="cors_origins"):
        ApiSettings(cors_origins=[origin])


def test_cors_origins_accept_hosts_ports_and_ipv6() -> None:
    origins = ["https://shop.example", "http://localhost:3000", "http://[::1]:8080"]
    assert ApiSettings(cors_origins=origins).cors_origins == origins


# --- security headers ----------------------------------------------------------------------------

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
}


async def test_every_answer_carries_the_security_headers(small_shop: Path) -> None:
    settings = ApiSettings(
        models_dir=small_shop,
        api_keys=[KEY],
        cors_origins=[ORIGIN],
        max_body_bytes=1024,
        watch_seconds=0,
    )
    async with serving(settings) as client:
        answers = [
            await client.get("/v1/recommendations", params={"visitor_id": "v1"}),
            await client.get("/v1/visitors/v1"),
            await client.get("/v1/recommendations", params={"k": "0"}),  # 422
            await client.post("/v1/events", json={}),  # 401
            await client.post("/v1/events", content=b"x" * 2048, headers={"X-API-Key": KEY}),
            await client.get("/no/such/route"),
            await client.get("/docs"),
            await client.get("/metrics"),
            await client.options("/v1/events", headers=_preflight()),
        ]
    assert [a.status_code for a in answers] == [200, 200, 422, 401, 413, 404, 200, 200, 200]
    for answer in answers:
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get_list(name) == [value], (answer.url, name)
