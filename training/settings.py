"""Deployment settings for the trainer, read from ``PERSONALIZE_*`` variables and CLI flags."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from training.evaluate import MAX_TEST_CUSTOMERS


class TrainerSettings(BaseSettings):
    """Where models go and how the trainer behaves; built by the CLI, never at import time."""

    model_config = SettingsConfigDict(env_prefix="PERSONALIZE_", extra="ignore")

    models_dir: Path = Field(Path("models"), description="root of versioned model directories")
    holdout_days: int = Field(30, ge=1, description="days at the end of the log held out to test")
    k: int = Field(10, ge=1, le=1000, description="list length the metrics are computed at")
    test_customers: int = Field(
        MAX_TEST_CUSTOMERS,
        ge=0,
        description="hold-out customers scored at most, a seeded sample beyond; 0 scores all",
    )
    threads: int = Field(0, ge=0, description="threads for fitting; 0 uses every core")
    device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="where ALS is fitted: auto uses a CUDA GPU when implicit sees one"
    )
    quiet: bool = Field(False, description="no progress output")

    @property
    def test_customer_limit(self) -> int | None:
        """``test_customers`` as the evaluation takes it: None (score all) for 0."""
        return self.test_customers or None
