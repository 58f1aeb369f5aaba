"""What the demo storefront and the browser client need from the API, without a browser:
the paged catalog, the demo's static files, and events posted as ``text/plain`` (beacons)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from shops import trained_shop

from api.browser import DEMO_DIR
from api.main import create_app
from api.settings import ApiSettings
from training.synthetic import ShopSpec, generate_shop

KEY = "storefront-key"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    shop = generate_shop(ShopSpec(customers=200, items=120, days=120, seed=3))
    return trained_shop(tmp_path_factory.mktemp("storefront"), shop)


@contextlib.asynccontextmanager
async def serving(models: Path, **settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(ApiSettings(models_dir=models, watch_seconds=0, **settings))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client


@pytest.fixture
async def client(models: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(models) as c:
        yield c


async def catalog(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/items", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_catalog_pages_through_every_item_once_best_selling_first(
    client: httpx.AsyncClient, models: Path
) -> None:
    from engine.model import load_model

    model = load_model(models, verify=False)
    first = await catalog(client, k=50)
    assert first["total"] == len(model.items) and first["offset"] == 0
    seen: list[str] = []
    for offset in range(0, first["total"], 50):
        page = await catalog(client, k=50, offset=offset)
        seen += [item["item_id"] for item in page["items"]]
    assert sorted(seen) == sorted(model.items.ids.tolist())  # every item, none twice
    sold = [float(model.scorer.popularity[model.items.index(item)]) for item in seen]
    assert sold == sorted(sold, reverse=True)
    item = first["items"][0]
    row = model.items.index(item["item_id"])
    assert item["description"] == model.description[row] and item["available"] is True
    assert (await catalog(client, offset=first["total"]))["items"] == []


async def test_the_catalog_shows_what_is_out_of_stock(client: httpx.AsyncClient) -> None:
    target = (await catalog(client, k=3))["items"][1]["item_id"]
    body = {"item_ids": [target], "available": False}
    assert (await client.put("/v1/items/availability", json=body)).status_code == 200
    shown = {item["item_id"]: item["available"] for item in (await catalog(client, k=3))["items"]}
    assert shown[target] is False and sum(shown.values()) == 2


@pytest.mark.parametrize("params", [{"k": 0}, {"k": 101}, {"offset": -1}, {"offset": 1 << 40}])
async def test_the_catalog_refuses_bad_pages(
    client: httpx.AsyncClient, params: dict[str, int]
) -> None:
    assert (await client.get("/v1/items", params=params)).status_code == 422


async def test_the_catalog_is_documented_with_its_response_model(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    answer = document["paths"]["/v1/items"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/CatalogOut"
    }


EVENT = '{"visitor_id": "v-beacon", "item_id": "sku1", "type": "click", "event_id": "b1"}'


@pytest.mark.parametrize("content_type", ["text/plain", "text/plain;charset=UTF-8"])
async def test_an_event_posted_as_text_plain_is_read_as_json(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/v1/events", content=EVENT, headers={"content-type": content_type}
    )
    assert response.status_code == 202, response.text
    again = await client.post("/v1/events", content=EVENT, headers={"content-type": content_type})
    assert again.json() == {"accepted": 0, "duplicates": 1, "unknown_items": 0}
    recent = (await client.get("/v1/visitors/v-beacon/recent")).json()["items"]
    assert [e["item_id"] for e in recent] == ["sku1"]
    # Both requests are timed under their route (the rewrite keeps the router's scope).
    metrics = (await client.get("/metrics")).text
    timed = {
        sample.labels["route"]: sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "personalize_http_request_duration_seconds_count"
        and sample.labels["method"] == "POST"
    }
    assert timed == {"/v1/events": 2.0}


async def test_text_plain_is_read_as_json_only_on_the_events_route(
    client: httpx.AsyncClient,
) -> None:
    response = await client.put(
        "/v1/items/availability",
        content='{"item_ids": ["sku1"], "available": false}',
        headers={"content-type": "text/plain"},
    )
    assert response.status_code == 422


async def test_a_beacon_cannot_write_when_the_api_has_keys(models: Path) -> None:
    async with serving(models, api_keys=[KEY]) as client:
        plain = {"content-type": "text/plain"}
        assert (await client.post("/v1/events", content=EVENT, headers=plain)).status_code == 401
        keyed = {**plain, "X-API-Key": KEY}
        assert (await client.post("/v1/events", content=EVENT, headers=keyed)).status_code == 202


async def test_the_demo_and_its_client_are_served(client: httpx.AsyncClient) -> None:
    redirect = await client.get("/demo")
    assert redirect.status_code in (307, 308) and redirect.headers["location"].endswith("/demo/")
    page = await client.get("/demo/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="demo.js">' in page.text
    script = await client.get("/demo/personalize.js")
    assert script.status_code == 200
    assert script.headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    assert "export class Personalize" in script.text


async def test_the_demo_can_be_turned_off(models: Path) -> None:
    async with serving(models, demo=False) as client:
        assert (await client.get("/demo/")).status_code == 404
        assert (await client.get("/demo/personalize.js")).status_code == 404
        assert (await client.get("/v1/items")).status_code == 200  # the API itself still serves


def test_the_demo_loads_nothing_from_elsewhere() -> None:
    """No CDN, font or script from another origin: the page works offline, leaks nothing."""
    for path in DEMO_DIR.iterdir():
        text = path.read_text()
        assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", text), path.name
        assert not re.search(r"@import|url\(\s*[\"']?(https?:)?//", text), path.name
