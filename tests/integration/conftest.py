from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.cluster import Cluster


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[Cluster]:
    """One running cluster for the tests that do not kill nodes."""
    c = Cluster()
    try:
        c.start()
        c.leader()
        yield c
    finally:
        c.close()


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A fresh cluster per test, for tests that kill, stop or restart nodes."""
    c = Cluster(snapshot_every=50)
    try:
        c.start()
        c.leader()
        yield c
    finally:
        c.close()
