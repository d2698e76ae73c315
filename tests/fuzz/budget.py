"""How hard the fuzz tests try: ``make test`` runs a bounded budget, ``make fuzz`` a long one.

``RAFTNODE_FUZZ_EXAMPLES`` is the number of hypothesis examples per property (default 200);
every example has a deadline, so a decoder that hangs or crawls on some input fails instead of
stalling the run.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

EXAMPLES = int(os.environ.get("RAFTNODE_FUZZ_EXAMPLES", "200"))
DEADLINE_MS = int(os.environ.get("RAFTNODE_FUZZ_DEADLINE_MS", "2000"))

fuzz_settings = settings(
    max_examples=EXAMPLES,
    deadline=DEADLINE_MS,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
"""One property's settings: the budget above, a per-example deadline, no example database
(nothing is written into the work tree)."""
