"""Scorers: turn what an artifact holds into a score for every item, for a block of users.

Every scorer satisfies :class:`Scorer`, so evaluation, e-mail batches and the API rank with the
same code, and one contract test suite covers them all.
"""

from engine.models.base import Scorer
from engine.models.baselines import BuyAgainScorer, PopularityScorer
from engine.models.collaborative import FactorScorer, ItemKnnScorer
from engine.models.repeat_aware import FEATURES, RepeatAwareScorer

__all__ = [
    "FEATURES",
    "BuyAgainScorer",
    "FactorScorer",
    "ItemKnnScorer",
    "PopularityScorer",
    "RepeatAwareScorer",
    "Scorer",
]
