from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.cluster import Cluster, running


@pytest.fixture(scope="module")
def shared_cluster() -> Iterator[Cluster]:
    """One running cluster for the tests that do not kill nodes."""
    with running() as c:
        yield c


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A fresh cluster per test, for tests that kill, stop or restart nodes."""
    with running(snapshot_every=50) as c:
        yield c
