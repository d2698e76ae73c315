# Local quick start: three raftnode processes on the default ports, and HAProxy in front.
#   node N: client API 808N, health 1000N, Raft peers 908N; HAProxy on 8080 (stats and
#   Prometheus /metrics on 8404)
# Configs, data, pid files and logs live under $(CLUSTER_DIR).
CLUSTER_DIR ?= data
HAPROXY_CFG ?= files/haproxy-local.cfg
HAPROXY_PID := $(CLUSTER_DIR)/haproxy.pid

TEST_TARGETS += test-integration

.PHONY: start-cluster stop-cluster start-lb stop-lb cluster-status test-integration bench-failover

## Start three local nodes (daemonized), wait for a leader (bounded), show who answers /primary.
start-cluster: venv
	$(PY) -m raftnode.devcluster start --dir $(CLUSTER_DIR) --timeout 20
	@for port in 10001 10002 10003; do \
		echo -n "Port $$port: "; \
		curl -s -o /dev/null -w "%{http_code}" http://localhost:$$port/primary; \
		echo; \
	done

## HAProxy on 127.0.0.1:8080 with files/haproxy-local.cfg (installs haproxy with apt when missing).
## Under SCHED_BATCH, as the haproxy role runs it (haproxy_cpu_scheduling): chrt is util-linux's.
start-lb:
	@command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
	@mkdir -p $(CLUSTER_DIR)
	@if [ -f $(HAPROXY_PID) ] && kill -0 $$(cat $(HAPROXY_PID)) 2>/dev/null; then \
		echo "haproxy already running (pid $$(cat $(HAPROXY_PID)))"; \
	else \
		haproxy -c -q -f $(HAPROXY_CFG) && \
		chrt --batch 0 haproxy -D -f $(HAPROXY_CFG) -p $(HAPROXY_PID) && \
		echo "haproxy on 127.0.0.1:8080 (stats http://127.0.0.1:8404/), pid $$(cat $(HAPROXY_PID))"; \
	fi

## Stop the local HAProxy.
stop-lb:
	@if [ -f $(HAPROXY_PID) ]; then \
		pid=$$(cat $(HAPROXY_PID)); kill $$pid 2>/dev/null || true; \
		for i in $$(seq 50); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
		rm -f $(HAPROXY_PID); echo "haproxy stopped"; \
	fi

## Stop the local nodes (SIGTERM, SIGKILL after 10s) and the local haproxy.
stop-cluster: stop-lb
	@if [ -x $(PY) ]; then $(PY) -m raftnode.devcluster stop --dir $(CLUSTER_DIR); \
	else python3 -m raftnode.devcluster stop --dir $(CLUSTER_DIR); fi

## The cluster as node 1 sees it (raftnode status).
cluster-status: venv
	$(VENV)/bin/raftnode status --url http://127.0.0.1:10001

## Real processes on loopback (free ports, not the default ones): elections, failover, errors, auth.
test-integration: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/integration

## Kill the leader 10 times, writing straight to the nodes, then 10 times through a local
## HAProxy (files/haproxy-local.cfg, as `make start-lb`); prints every round, median and max.
bench-failover: venv
	@command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
	$(PY) -m bench.failover --kills 10
	$(PY) -m bench.failover --kills 10 --through-lb
