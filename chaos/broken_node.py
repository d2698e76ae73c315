"""A deliberately broken cluster for proving the checkers (``make chaos FAILPOINTS=...``).

Every Raft node of the lab gets a systemd drop-in that starts raftnode with
``RAFTNODE_FAILPOINTS`` (``raftnode.failpoints``: guarantees broken on purpose), and is
restarted one at a time, each waited for until its ``/status`` names the failpoints. A run on
such a cluster must end with anomalies: a clean report would mean the checker misses what the
failpoint breaks.
"""

from __future__ import annotations

import asyncio
import shlex

from raftnode.failpoints import ENVIRONMENT_VARIABLE

from .http_client import request
from .lab_error import LabError
from .nemesis import HEALTH_PORT, LabHosts, lab_cli

DROP_IN = "/etc/systemd/system/raftnode.service.d/90-failpoints.conf"
RESTART_TIMEOUT = 60.0
"""How long a restarted node may take before its /status names the failpoints."""


def drop_in_script(failpoints: frozenset[str]) -> str:
    """The shell that writes the drop-in and restarts raftnode with it."""
    text = f"[Service]\nEnvironment={ENVIRONMENT_VARIABLE}={','.join(sorted(failpoints))}\n"
    return (
        f"mkdir -p {shlex.quote(DROP_IN.rsplit('/', 1)[0])}"
        f" && printf %s {shlex.quote(text)} > {DROP_IN}"
        " && systemctl daemon-reload && systemctl restart raftnode"
    )


async def break_nodes(hosts: LabHosts, failpoints: frozenset[str]) -> None:
    """Restart every Raft node with ``failpoints`` on; raises ``LabError`` when one does not
    come back naming them within RESTART_TIMEOUT."""
    loop = asyncio.get_running_loop()
    for host, address in sorted(hosts.raft.items()):
        await lab_cli(hosts.name, "exec", host, "--", "sh", "-c", drop_in_script(failpoints))
        deadline = loop.time() + RESTART_TIMEOUT
        while True:
            answer = await request(f"http://{address}:{HEALTH_PORT}", "GET", "/status", timeout=1.0)
            document = answer.json() if answer.status == 200 else None
            named = document.get("failpoints") if isinstance(document, dict) else None
            if named == sorted(failpoints):
                print(f"chaos: {host} runs with failpoints {named}", flush=True)
                break
            if loop.time() > deadline:
                raise LabError(
                    f"{host} did not come back with failpoints {sorted(failpoints)} within "
                    f"{RESTART_TIMEOUT:.0f} s (last /status: {answer.status} {answer.body[:300]!r})"
                )
            await asyncio.sleep(0.5)
