# roles/haproxy's configuration, run on loopback in front of test clusters (tests/haproxy):
# rendered by Ansible, checked with haproxy -c, and run as a child of the test (Debian's haproxy
# package is installed when missing; its service is not used).
TEST_TARGETS += test-haproxy

.PHONY: test-haproxy

## roles/haproxy's haproxy.cfg (rendered by Ansible, checked with haproxy -c) in front of
## loopback clusters: routing, and keyed writes of unknown outcome never answered 503.
test-haproxy: $(VENV)/.deploy-installed
	@command -v haproxy >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy >/dev/null; }
	$(PY) -m pytest -q -p no:cacheprovider tests/haproxy
