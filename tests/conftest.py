"""Shared pytest fixtures."""

import os
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a private redis-server started for this test session (never the machine's Redis).

    Tests share it, so each must isolate itself with its own key prefix (or FLUSHDB it: it is
    ours). Fails without redis-server unless PERSONALIZE_SKIP_REDIS=1, which skips instead.
    """
    from redis_server import running_redis

    with running_redis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of one node of a private three-master Redis Cluster started for this test session
    (redis-server --cluster-enabled yes, joined by redis-cli --cluster create); the client
    discovers the others from it. Shared like ``redis_url``: isolate by key prefix."""
    from redis_server import running_cluster

    with running_cluster(tmp_path_factory.mktemp("redis-cluster")) as nodes:
        yield f"redis://127.0.0.1:{nodes[0].port}"
