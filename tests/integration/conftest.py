"""The small trained shop of the API's security, limits and fuzzing tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from shops import trained_shop

from benchmarks.fixtures import small_shop_spec
from training.synthetic import generate_shop


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_shop_spec`` trained once per session (read-only)."""
    return trained_shop(tmp_path_factory.mktemp("small-shop"), generate_shop(small_shop_spec()))
