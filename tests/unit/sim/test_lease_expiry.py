"""The simulation's lease checks: leases expire through the log, never before the TTL from the
last answered keep-alive (across crashes, partitions and leader changes); a lessor whose
keep-alive answers without renewing fails the simulation, and one that never expires fails its
liveness check."""

from __future__ import annotations

import logging

import pytest

from raftnode.kv.lessor import LeaseStatus, Lessor
from tests.sim.checker import SafetyViolation
from tests.sim.cluster import Simulation

SEED = 11


def _run() -> Simulation:
    logging.getLogger("raftnode").setLevel(logging.CRITICAL + 1)
    sim = Simulation(SEED, size=3, kv_store=True)
    sim.run()
    return sim


def test_the_seed_expires_leases_through_the_log() -> None:
    sim = _run()
    assert sim.checker.leases.acks > 10 and len(sim.checker.leases.expired_at) > 3


def test_a_keep_alive_that_does_not_renew_fails_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def answers_only(self: Lessor, lease: int, deadline: float) -> LeaseStatus:
        status = self._status(await self._confirmed_leader(deadline), lease)
        return LeaseStatus(lease, float(status.granted), status.granted)  # deadline unchanged

    monkeypatch.setattr(Lessor, "keep_alive", answers_only)
    with pytest.raises(SafetyViolation, match=r"expiry of lease|expiry applied at"):
        _run()


def test_a_lessor_that_never_expires_fails_the_liveness_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Lessor, "sweep", lambda self: [])
    with pytest.raises(SafetyViolation, match="nobody keeps alive were not revoked"):
        _run()
