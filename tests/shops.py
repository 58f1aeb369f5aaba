"""A generated shop trained into a models directory: the fixture several test modules build.

Defined beside the benchmarks (``benchmarks.fixtures``), which train the same small shop.
"""

from benchmarks.fixtures import trained_shop

__all__ = ["trained_shop"]
