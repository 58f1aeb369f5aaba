"""Screenshots of the browser tests, for a person to look at after a run (``test-artifacts/``,
not committed)."""

from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"


def save_screenshot(driver: Any, name: str) -> None:
    """Save the page as ``<name>.png``; Selenium only returns False when it cannot write."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert driver.save_screenshot(str(ARTIFACTS / f"{name}.png")), f"screenshot {name} not saved"
