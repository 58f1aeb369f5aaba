"""Model hyperparameters: typed, constrained, stored verbatim in every artifact's manifest."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.matrix import Weighting


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FactorParams(_Params):
    """Latent-factor model fitted with implicit."""

    algorithm: Literal["als", "bpr"] = "als"
    factors: int = Field(64, ge=2, le=1024, description="latent dimensions")
    regularization: float = Field(0.05, ge=0.0, description="L2 penalty on the factors")
    iterations: int = Field(15, ge=1, le=1000, description="ALS sweeps or BPR epochs")
    learning_rate: float = Field(0.01, gt=0.0, description="BPR only")
    weighting: Weighting = Field(
        Weighting.BM25, description="confidence weighting of the purchase matrix"
    )


class KnnParams(_Params):
    """Item-item nearest neighbours fitted with implicit."""

    similarity: Literal["bm25", "cosine"] = "bm25"
    neighbours: int = Field(100, ge=1, le=10_000, description="neighbours kept per item")


class FusionParams(_Params):
    """How the repeat-aware model learns its weights."""

    validation_days: int = Field(
        30, ge=1, description="length of the validation window cut from the end of training"
    )
    trend_days: int = Field(30, ge=1, description="window of the 'trending' item feature")
    negatives_per_user: int = Field(
        200, ge=1, description="items sampled per customer as non-purchases when fitting"
    )


class BasketParams(_Params):
    """Which bought-together pairs the artifact keeps."""

    min_support: int = Field(3, ge=1, description="baskets a pair must appear in to be kept")
    per_item: int = Field(50, ge=1, le=10_000, description="partners kept per item, by support")


class CandidateParams(_Params):
    """Which catalogs get candidate lists (``engine.candidates``)."""

    from_items: int = Field(
        50_000,
        ge=1,
        description="catalogs of at least this many items get candidate lists (k-means over the "
        "item factors), from which the API ranks plain pages instead of every item",
    )


class ModelParams(_Params):
    """Everything that decides what a trained model recommends."""

    factors: FactorParams = FactorParams()
    knn: KnnParams = KnnParams()
    fusion: FusionParams = FusionParams()
    baskets: BasketParams = BasketParams()
    candidates: CandidateParams = CandidateParams()
    seed: int = Field(0, ge=0, description="random seed for factor initialisation and sampling")
