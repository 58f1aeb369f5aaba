"""The demo storefront in a real browser: headless Chromium, driven by Selenium.

The API runs as it is deployed (``serve`` under uvicorn, the embedded store) on a free loopback
port, serving a model trained on a small generated shop. Screenshots go to
``test-artifacts/browser/`` (not committed). Skipped, saying why, only when no Chromium and
chromedriver are installed (``scripts/test.sh`` installs Debian's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from screenshots import save_screenshot
from shops import trained_shop

from benchmarks.servers import HOST, engine_server, free_port
from training.synthetic import ShopSpec, generate_shop

pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

WAIT_SECONDS = 10.0
PANELS = ("recommended", "together", "recent", "trending")


KEY = "demo-key"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("demo-shop")
    return trained_shop(folder, generate_shop(ShopSpec(customers=300, items=200, days=120)))


def _serving(models: Path, *options: str) -> Any:
    port = free_port()
    log = models.parent / f"api-{port}.log"
    options = ("--watch-seconds", "0", *options)
    server = engine_server(models, port, log, None, options=options, entry="api.cli")
    return server, f"http://{HOST}:{port}"


@pytest.fixture(scope="module")
def api(models: Path) -> Iterator[str]:
    """The API on a small generated shop, without API keys (development mode)."""
    server, url = _serving(models)
    with server:
        yield url


class Page:
    """The demo page in the browser, read the way a visitor sees it."""

    def __init__(self, driver: Any, api: str) -> None:
        self.driver = driver
        self.api = api
        driver.get(f"{api}/demo/")
        driver.execute_script("localStorage.clear()")  # a new visitor for every test
        driver.refresh()
        self.actions = 0
        self.wait_for_update()

    def wait_for_update(self) -> None:
        """Until the page has finished one more action (and refreshed its panels, if it could)."""
        expected = self.actions + 1
        WebDriverWait(self.driver, WAIT_SECONDS).until(
            lambda d: (
                int(d.find_element(By.TAG_NAME, "body").get_attribute("data-actions")) >= expected
            )
        )
        self.actions = expected

    def panel(self, name: str) -> list[tuple[str, str]]:
        """(item id, reason) of each item the panel shows."""
        rows = self.driver.find_elements(By.CSS_SELECTOR, f"#{name} li[data-item-id]")
        return [
            (row.get_attribute("data-item-id"), row.find_element(By.CLASS_NAME, "reason").text)
            for row in rows
        ]

    def panel_ids(self) -> set[str]:
        return {item for name in PANELS for item, _ in self.panel(name)}

    def card(self, item_id: str) -> Any:
        return self.driver.find_element(By.CSS_SELECTOR, f'#catalog li[data-item-id="{item_id}"]')

    def catalog_ids(self) -> list[str]:
        cards = self.driver.find_elements(By.CSS_SELECTOR, "#catalog li[data-item-id]")
        return [card.get_attribute("data-item-id") for card in cards]

    def click_product(self, item_id: str) -> None:
        self.card(item_id).find_element(By.CLASS_NAME, "view").click()
        self.wait_for_update()

    def toggle_stock(self, item_id: str) -> None:
        self.card(item_id).find_element(By.CLASS_NAME, "stock").click()
        self.wait_for_update()

    def text(self, element_id: str) -> str:
        return str(self.driver.find_element(By.ID, element_id).text)

    def screenshot(self, name: str) -> None:
        save_screenshot(self.driver, name)


def test_clicks_change_the_recommendations_and_every_item_says_why(driver: Any, api: str) -> None:
    page = Page(driver, api)
    page.screenshot("1-new-visitor")
    before = page.panel("recommended")
    assert len(before) == 6 and "trending" in page.text("strategy")
    catalog = page.catalog_ids()
    assert len(catalog) == 12
    clicked = [catalog[4], catalog[7], catalog[10]]
    for item in clicked:
        page.click_product(item)
    page.screenshot("2-after-three-clicks")

    after = page.panel("recommended")
    assert [i for i, _ in after] != [i for i, _ in before]
    assert "session" in page.text("strategy")
    assert all(reason for _, reason in after), after
    assert any(reason.startswith("because you viewed") for _, reason in after), after
    assert not set(clicked) & {i for i, _ in after}  # seen this session: left out
    recent_panel = page.panel("recent")
    assert [i for i, _ in recent_panel] == clicked[::-1]  # newest first
    assert all(reason.startswith("you clicked it at ") for _, reason in recent_panel)
    assert page.text("together-with").startswith("with ")
    assert all("bought together in" in reason for _, reason in page.panel("together"))
    assert all(reason for _, reason in page.panel("trending"))
    # The clicks reached the API as this browser's visitor, whose id the page keeps.
    visitor = page.text("visitor-id")
    assert driver.execute_script("return localStorage.getItem('p13n.visitor')") == visitor
    recent = httpx.get(f"{api}/v1/visitors/{visitor}/recent").json()
    assert [e["item_id"] for e in recent["items"]] == clicked[::-1]
    assert {e["type"] for e in recent["items"]} == {"click"}


def test_an_item_marked_out_of_stock_leaves_every_panel_at_once(driver: Any, api: str) -> None:
    page = Page(driver, api)
    catalog = page.catalog_ids()
    for item in catalog[:2]:
        page.click_product(item)
    shown = page.panel_ids()
    # An item both on the grid (where its toggle is) and in the panels.
    target = next(item for item in catalog if item in shown)
    page.toggle_stock(target)
    page.screenshot("3-out-of-stock")
    try:
        assert target not in page.panel_ids()
        card = page.card(target)
        assert "out" in card.get_attribute("class").split()
        assert card.find_element(By.CLASS_NAME, "stock").get_attribute("aria-pressed") == "true"
        assert "out of stock" in page.text("status")
    finally:
        page.toggle_stock(target)  # the API is shared by this module's tests
    assert "out" not in page.card(target).get_attribute("class").split()


def test_logging_in_merges_the_session_with_the_customer(driver: Any, api: str) -> None:
    page = Page(driver, api)
    page.click_product(page.catalog_ids()[3])
    select = Select(driver.find_element(By.ID, "customer"))
    customer = next(o.get_attribute("value") for o in select.options if o.get_attribute("value"))
    select.select_by_value(customer)
    driver.find_element(By.ID, "login").click()
    page.wait_for_update()
    page.screenshot("4-logged-in")
    assert "customer+session" in page.text("strategy")
    assert page.text("customer-badge") == f"logged in as {customer}"
    visitor = page.text("visitor-id")
    assert httpx.get(f"{api}/v1/visitors/{visitor}").json()["customer_id"] == customer


QUEUE_THEN_FLUSH = """
const done = arguments[arguments.length - 1];
const { Personalize } = await import('/demo/personalize.js');
const down = new Personalize({ endpoint: arguments[0], baseDelayMs: 60000 });
const outcome = await down.track({ type: 'view', item_id: arguments[1] });
const queued = down.queue().map((e) => e.event_id);
clearTimeout(down.timer);
const up = new Personalize({ endpoint: '' });  // the same storage: it finds the queue
const left = await up.flush();
const again = await fetch('/v1/events', { method: 'POST', body: JSON.stringify(
    { event_id: queued[0], visitor_id: up.visitorId, item_id: arguments[1], type: 'view' }),
    headers: { 'Content-Type': 'application/json' } }).then((r) => r.json());
done({ outcome, queued, left, again, visitor: up.visitorId });
"""


def test_the_client_queues_events_while_the_api_is_unreachable_and_delivers_them_once(
    driver: Any, api: str
) -> None:
    page = Page(driver, api)
    item = page.catalog_ids()[0]
    unreachable = f"http://{HOST}:{free_port()}"
    driver.set_script_timeout(WAIT_SECONDS)
    result = driver.execute_async_script(
        f"(async () => {{ {QUEUE_THEN_FLUSH} }})()", unreachable, item
    )
    assert result["outcome"] == "queued" and len(result["queued"]) == 1
    assert result["left"] == 0
    assert driver.execute_script("return localStorage.getItem('p13n.queue')") is None
    # The id was made in the browser: the API counts the retry of a stored event as a duplicate.
    assert result["again"] == {"accepted": 0, "duplicates": 1, "unknown_items": 0}
    recent = httpx.get(f"{api}/v1/visitors/{result['visitor']}/recent").json()
    assert [e["item_id"] for e in recent["items"]] == [item]


def test_a_beacon_is_accepted_as_sent(driver: Any, api: str) -> None:
    """sendBeacon posts a string as text/plain: the API must read it as the JSON it is."""
    page = Page(driver, api)
    item = page.catalog_ids()[1]
    visitor = page.text("visitor-id")
    sent = driver.execute_script(
        "return navigator.sendBeacon('/v1/events', JSON.stringify("
        "{visitor_id: arguments[0], item_id: arguments[1], type: 'add_to_cart'}))",
        visitor,
        item,
    )
    assert sent is True

    def arrived(_: Any) -> bool:
        recent = httpx.get(f"{api}/v1/visitors/{visitor}/recent").json()["items"]
        return [(e["item_id"], e["type"]) for e in recent] == [(item, "add_to_cart")]

    WebDriverWait(driver, WAIT_SECONDS).until(arrived)


def test_with_api_keys_the_demo_writes_only_once_given_a_key(driver: Any, models: Path) -> None:
    server, url = _serving(models, "--api-key", KEY)
    with server:
        page = Page(driver, url)  # reads need no key
        item = page.catalog_ids()[0]
        page.click_product(item)
        assert "API keys" in page.text("status")
        assert page.panel("recent") == []
        field = driver.find_element(By.ID, "api-key")
        field.send_keys(KEY)
        driver.find_element(By.ID, "catalog-heading").click()  # leaving the field commits it
        page.click_product(item)
        assert [i for i, _ in page.panel("recent")] == [item]
        assert driver.execute_script("return JSON.stringify(localStorage)").find(KEY) == -1
