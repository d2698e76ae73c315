# Jepsen-style runs (issue 20): concurrent clients record a history on a lab of their own while
# a nemesis kills, pauses, partitions and fails over; chaos/ checks the history
# (linearizability per key, lost and duplicated acknowledged writes, stale reads).
# Needs root (lab hosts). Writes build/chaos/<run>/: history.jsonl, summary.json/.txt, PNGs.
DURATION ?= 120
NEMESIS ?= all
WORKLOAD ?= register,set
CHAOS_OUT ?= build/chaos
NODES ?= 3
# Share of rounds with two faults at once (COMBINE=0.3 for combined schedules; membership
# rounds always combine). Off by default until combined rounds have passed real runs.
COMBINE ?= 0
# FAILPOINTS=reads-skip-read-index: every node broken on purpose (raftnode.failpoints); the run
# must then FAIL with anomalies, which shows the checker catches that breakage.
FAILPOINTS ?=

TEST_TARGETS += chaos

.PHONY: chaos

## A short chaos run (DURATION s, NEMESIS=all|kill|partition|disk|pause|lb|transfer|restart|
## membership, comma lists of groups or kinds, `all,membership` for all and an opt-in kind; COMBINE=0.3: a share of rounds run two faults at once; the opt-in kinds
## (wal-lost-tail, keepalived-kill, rolling-restart, membership, full-disk) only when named or by
## their group;
## WORKLOAD=register,set,append adds list-append transactions checked Elle's way)
## on a lab of its own (NODES=5: five Raft nodes); fails on any anomaly. `make chaos DURATION=1800` for a long run.
## FAILPOINTS=reads-skip-read-index: a deliberately broken cluster (the run must fail).
chaos: $(VENV)/.deploy-installed bench-venv wheels
	$(PY) -m chaos.run --duration $(DURATION) \
		--nemesis $(NEMESIS) --workload $(WORKLOAD) --out $(CHAOS_OUT) --nodes $(NODES) \
		--combine $(COMBINE) --failpoints "$(FAILPOINTS)"
