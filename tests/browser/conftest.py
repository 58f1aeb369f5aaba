"""Headless Chromium for the browser tests: Debian's chromium and chromedriver, nothing
downloaded. Tests that take ``driver`` skip, saying why, when neither is installed."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")


def _find(variable: str, *names: str) -> str | None:
    explicit = os.environ.get(variable)
    if explicit:
        return explicit
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    browser = _find("CHROMIUM", "chromium", "chromium-browser", "google-chrome")
    chromedriver = _find("CHROMEDRIVER", "chromedriver")
    if browser is None or chromedriver is None:
        pytest.skip(
            "no Chromium and chromedriver found (apt-get install chromium chromium-driver, "
            "or set CHROMIUM and CHROMEDRIVER): the pages were not tested in a browser"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1800", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    # Both paths given: Selenium never looks for (or downloads) a browser or driver of its own.
    service = webdriver.ChromeService(executable_path=chromedriver)
    chrome = webdriver.Chrome(options=options, service=service)
    try:
        yield chrome
    finally:
        chrome.quit()
