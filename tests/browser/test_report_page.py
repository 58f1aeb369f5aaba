"""``personalize report`` opened in a real browser: every plot is drawn, nothing is fetched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from screenshots import save_screenshot

from benchmarks.fixtures import small_shop_spec
from personalize.cli import main
from training.logs import PRESETS, read_purchase_log
from training.params import ModelParams
from training.pipeline import train_model
from training.synthetic import generate_shop, write_log

pytest.importorskip("matplotlib", reason="the report's plots need matplotlib")
pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By

PLOTS = 5  # quality against the baselines, segment sizes and map, the 80/20 curves, coverage


def test_the_report_renders_every_plot(driver: Any, tmp_path: Path) -> None:
    write_log(generate_shop(small_shop_spec()), tmp_path / "l.pq")
    log = read_purchase_log(tmp_path / "l.pq", PRESETS["generic"])
    train_model(log, ModelParams(), models_dir=tmp_path / "models", threads=1)
    page = tmp_path / "report.html"
    assert main(["report", "--models", str(tmp_path / "models"), "--out", str(page),
                 "--benchmarks", str(tmp_path / "none.json")]) == 0  # fmt: skip

    driver.get(page.as_uri())
    plots = driver.find_elements(By.TAG_NAME, "svg")
    assert len(plots) == PLOTS
    for plot in plots:  # drawn: laid out with a size, and holding marks
        assert plot.size["width"] > 100 and plot.size["height"] > 100
        assert plot.find_elements(By.CSS_SELECTOR, "path, rect, line, polyline")
    # Self-contained: the browser loaded nothing but the file itself.
    loaded = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert loaded == []
    save_screenshot(driver, "report")
