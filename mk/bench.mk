# Side-by-side benchmarks of issue 8: raftnode against etcd (Debian etcd-server) and PySyncObj,
# driven by wrk (bench/wrk/kv.lua). Both install what is missing (apt-get etcd-server wrk haproxy,
# Debian's nginx unpacked into .venv/nginx by mk/nginx.mk,
# a PySyncObj virtualenv under build/) and write JSON and PNG under $(BENCH_OUT).
BENCH_SECONDS ?= 10
BENCH_ROUNDS ?= 2
BENCH_PEERS_ROWS ?= all
BENCH_OUT ?= build/bench
BENCH_KEYS ?= 1000000
BENCH_DURATION ?= 240
BENCH_INTERVAL ?= 10
BENCH_RESTART_TIMEOUT ?= 300

.PHONY: bench-venv bench-peers bench-scale bench-connections bench-client

## The bench extra (matplotlib, for the PNGs beside the figures) in .venv.
bench-venv: $(VENV)/.bench-installed

$(VENV)/.bench-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

## raftnode vs etcd (and PySyncObj, and via HAProxy and nginx) side by side, A/B/A/B; BENCH_SECONDS=3 for a quick run.
## BENCH_PEERS_ROWS=tls: only the TLS rows (raftnode TLS vs etcd TLS, and vs itself without).
## nginx is roles/nginx's configuration (rendered by Ansible) on Debian's packages unpacked in .venv/nginx.
bench-peers: bench-venv $(VENV)/.deploy-installed $(VENV)/nginx/usr/sbin/nginx
	$(PY) -m bench.peers_bench --seconds $(BENCH_SECONDS) --rounds $(BENCH_ROUNDS) \
		--rows $(BENCH_PEERS_ROWS) --out $(BENCH_OUT)

## Grow the store (a new key per write, 64 connections) on raftnode and etcd; BENCH_KEYS, BENCH_DURATION (s per system), BENCH_INTERVAL.
bench-scale: bench-venv
	$(PY) -m bench.scale_bench --keys $(BENCH_KEYS) --duration $(BENCH_DURATION) \
		--interval $(BENCH_INTERVAL) --restart-timeout $(BENCH_RESTART_TIMEOUT) --out $(BENCH_OUT)

BENCH_IDLE ?= 5000
BENCH_SLOWLORIS ?= 500
BENCH_RUNS ?= 3

## One node with BENCH_IDLE idle and BENCH_SLOWLORIS slowloris connections: its RSS and descriptors, and a client's p50/p99 against the client alone (median of BENCH_RUNS).
bench-connections: bench-venv
	$(PY) -m bench.connection_load --idle $(BENCH_IDLE) --slowloris $(BENCH_SLOWLORIS) \
		--runs $(BENCH_RUNS) --out $(BENCH_OUT)

BENCH_CLIENT_SECONDS ?= 5
BENCH_CLIENT_CONNECTIONS ?= 16,64

## The client's own cost: the same keyed writes from wrk and from raftnode.client (sync, asyncio) to one cluster, BENCH_RUNS runs each, median and spread.
bench-client: venv
	$(PY) -m bench.client_bench --runs $(BENCH_RUNS) --seconds $(BENCH_CLIENT_SECONDS) \
		--connections $(BENCH_CLIENT_CONNECTIONS) --out $(BENCH_OUT)

BENCH_APP_SECONDS ?= 5
BENCH_APP_CONNECTIONS ?= 16
BENCH_WATCHERS ?= 1000
BENCH_WATCH_RATE ?= 100
BENCH_WATCH_PROCS ?= 4
BENCH_APP_ROWS ?= txn,keepalive,watch

.PHONY: bench-app

## Issue 18's rows vs etcd, A/B alternating, BENCH_RUNS runs: txn and lease keep-alive ok/s (BENCH_APP_CONNECTIONS), watch fan-out (BENCH_WATCHERS streams, BENCH_WATCH_RATE writes/s, a comma-separated list for one row per rate): p50/p99, achieved rate, missed. BENCH_APP_ROWS picks rows.
bench-app: bench-venv
	$(PY) -m bench.app_bench --runs $(BENCH_RUNS) --seconds $(BENCH_APP_SECONDS) \
		--connections $(BENCH_APP_CONNECTIONS) --watchers $(BENCH_WATCHERS) \
		--watch-rate $(BENCH_WATCH_RATE) --watch-procs $(BENCH_WATCH_PROCS) --rows $(BENCH_APP_ROWS) \
		--out $(BENCH_OUT)
