"""Jepsen-style verification of raftnode: record a client history under injected faults, then
check it.

- ``history``: the operation records and their JSON lines file.
- ``linearizability``: Wing-Gong/Lowe search with memoization (Porcupine's algorithm), per key,
  for a register with put/get/cas/delete, correct for indeterminate operations.
- ``set_checker``: lost, duplicated and unexpected elements of a set built with acknowledged adds.
- ``stale_reads``: stale reads never return a value nobody wrote, never go back in time.
- ``elle``: list-append transactions checked for dependency cycles (Elle's approach: G0, G1c,
  G-single, G2, with real-time edges for strict serializability), aborted and intermediate
  reads, incompatible orders, duplicated and lost appends.
- ``report``: summary text and JSON, PNG pictures when matplotlib is present.
- ``workload``: concurrent clients against a list of endpoints (asyncio, stdlib HTTP).
- ``list_append``: clients running read-then-compare ``POST /txn`` appends to JSON lists, over
  raw HTTP with idempotency keys or through ``raftnode.client`` (``--workload ...,append``).
- ``nemesis``: faults on lab hosts through ``python3 -m lab.raftlab``, always healed.
- ``run``: ``make chaos``: a lab of its own, site.yml, workload + nemesis, the checks, a report.
"""
