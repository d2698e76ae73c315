"""The leader-kill rounds over TLS (side_effect.yml): every window within the bounds the
plaintext failover scenario keeps, and no acknowledged write lost."""

from __future__ import annotations

import fault_rounds


def test_ten_leader_kills_over_tls_each_have_a_short_window() -> None:
    # The failover scenario's bounds for the same fault in plaintext.
    fault_rounds.check_rounds_report("leader-kill-tls", median_bound_ms=1500, max_bound_ms=5000)
