"""Trained shops shared by the integration tests: the small one of the security, limits and
fuzzing tests, and the two-version one of the fault and worker tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from shops import trained_shop, two_version_shop

from benchmarks.fixtures import small_shop_spec
from training.synthetic import generate_shop


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``small_shop_spec`` trained once per session (read-only)."""
    return trained_shop(tmp_path_factory.mktemp("small-shop"), generate_shop(small_shop_spec()))


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory with two versions (read-only: every test works on :func:`models`)."""
    return two_version_shop(tmp_path_factory.mktemp("two-version-shop"))


@pytest.fixture
def models(shop: Path, tmp_path: Path) -> Path:
    """The test's own copy of :func:`shop`, free to publish into or damage."""
    target = tmp_path / "models"
    shutil.copytree(shop, target, symlinks=True)
    return target
