# Monitoring: Prometheus alert rules and a Grafana dashboard in files/monitoring/, tested by
# promtool (rule unit tests) and by tests/monitoring (every metric they use is exported by a live
# node or HAProxy). promtool comes from Debian's `prometheus` package: when it is not on PATH, only
# the binary is taken out of the package (apt-get download, dpkg-deb -x) into .venv/promtool, so no
# Prometheus server gets installed or started.
MONITORING_DIR := files/monitoring
PROMTOOL_LOCAL := $(VENV)/promtool/usr/bin/promtool
PROMTOOL ?= $(or $(shell command -v promtool 2>/dev/null),$(PROMTOOL_LOCAL))

TEST_TARGETS += test-monitoring

.PHONY: test-monitoring

$(PROMTOOL_LOCAL):
	@mkdir -p $(VENV)/promtool
	@cd $(VENV)/promtool && { apt-get download -qq prometheus 2>/dev/null || \
		{ apt-get update -qq && apt-get download -qq prometheus; }; } && \
		dpkg-deb -x prometheus_*.deb . && rm -f prometheus_*.deb
	@$@ --version | head -1

## Alert rules and dashboard: promtool check and unit-test the rules, then a live 3-node cluster
## and HAProxy must export every metric the rules and panels use (installs promtool and haproxy).
test-monitoring: venv $(PROMTOOL)
	@command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
	$(PROMTOOL) check rules $(MONITORING_DIR)/raftnode-alerts.yml
	$(PROMTOOL) test rules $(MONITORING_DIR)/raftnode-alerts.test.yml
	PATH="$(abspath $(dir $(PROMTOOL))):$$PATH" $(PY) -m pytest -q -p no:cacheprovider tests/monitoring
