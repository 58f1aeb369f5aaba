"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public datasets ($PERSONALIZE_SHARED_DATA, else ../shared/data)."""
    folder = Path(os.environ.get("PERSONALIZE_SHARED_DATA") or REPO.parent / "shared" / "data")
    if not folder.is_dir():
        pytest.skip(
            f"shared datasets not found at {folder}; "
            "set PERSONALIZE_SHARED_DATA or place shared/data beside the checkout"
        )
    return folder
