# raftnode lab: systemd-nspawn test hosts (lab/raftlab), the cluster deployed onto them, and
# the tests that boot them (test-lab, test-molecule). Needs root; see molecule/shared/README.md.
# The lab CLI is stdlib-only and runs with the system python3, before any virtualenv exists.
# Deploy tools and ANSIBLE_PLAYBOOK come from mk/deploy.mk.
LAB_NAME ?= raftlab
LAB_HOSTS ?= n1,n2,n3,lb1,lb2
# The docs' example addresses (VIP 10.77.0.100) assume this subnet. Test labs never take it:
# they ask the lab CLI for a free one (`up --subnet auto`), so `make test` runs beside `make lab`.
LAB_SUBNET ?= 10.77.0.0/24
LAB := python3 -m lab.raftlab
LAB_INVENTORY := .lab/$(LAB_NAME).yml

TEST_TARGETS += test-lab

.PHONY: lab lab-image lab-up lab-down lab-status lab-inventory test-lab test-molecule

## A running cluster on local test hosts: boots the lab (LAB_NAME, LAB_HOSTS, LAB_SUBNET),
## builds the wheels, runs site.yml and the smoke test onto it, prints the VIP URL.
## `make lab-down` removes it.
lab: $(VENV)/.deploy-installed wheels lab-up
	RAFTLAB_NAME=$(LAB_NAME) $(ANSIBLE_PLAYBOOK) -i inventories/lab -i $(LAB_INVENTORY) site.yml
	RAFTLAB_NAME=$(LAB_NAME) $(ANSIBLE_PLAYBOOK) -i inventories/lab -i $(LAB_INVENTORY) playbooks/smoke-test.yml
	@echo "lab: cluster behind http://$$($(LAB) --name $(LAB_NAME) status | sed -n 's/.* vip \([0-9.]*\).*/\1/p'):8080"
	@$(LAB) --name $(LAB_NAME) status
	@echo "lab: on a host: $(LAB) --name $(LAB_NAME) exec n1 -- systemctl status raftnode"
	@echo "lab: over SSH:  ssh -i $$(sed -n 's/.*ansible_ssh_private_key_file: *//p' $(LAB_INVENTORY) | head -1) root@ADDRESS (addresses above)"
	@echo "lab: make lab-down removes it all"

## Build the guest image (Debian 12 + systemd, sshd, haproxy, nginx, keepalived), or reuse the cache.
lab-image:
	$(LAB) image

## Boot LAB_HOSTS as lab LAB_NAME and write its Ansible inventory to .lab/LAB_NAME.yml.
lab-up:
	@mkdir -p .lab
	$(LAB) up --name $(LAB_NAME) --hosts $(LAB_HOSTS) --subnet $(LAB_SUBNET) \
		--inventory $(LAB_INVENTORY)

## Destroy lab LAB_NAME: guests, disks, bridge and state (safe to repeat).
lab-down:
	$(LAB) down --name $(LAB_NAME)
	rm -f $(LAB_INVENTORY)

## The hosts of lab LAB_NAME: addresses, systemd state, fault rules.
lab-status:
	$(LAB) status --name $(LAB_NAME)

## Print lab LAB_NAME's Ansible inventory.
lab-inventory:
	$(LAB) inventory --name $(LAB_NAME)

## Boots five hosts (and a second lab beside them), drives Ansible over SSH and every fault
## primitive, then tears down (skipped with a reason unless root on Linux); plus the lab's
## pure parts. Its labs get a unique name and a free subnet: a running `make lab` is safe.
test-lab: $(VENV)/.deploy-installed
	PATH="$(DEPLOY_BIN):$$PATH" $(PY) -m pytest -q -p no:cacheprovider -rs tests/lab

MOLECULE_SCENARIOS ?= default failover quorum membership
## Every Molecule scenario on lab hosts of its own, one after another (root): default
## (converge, idempotence, backup and restore, routing, TLS rotation, leader kills over TLS), failover (upgrade in place, leader
## and HAProxy faults),
## quorum (leader isolation, two of three down, then both fault rounds, with nginx as the
## balancer), membership
## (grow 3 -> 5, remove 2).
## `make test` runs them last. Each scenario's log is kept in build/molecule/; when one fails,
## the lines that say why are printed again at the end (molecule/shared/failure_digest.py).
test-molecule: $(VENV)/.deploy-installed
	@set -e -o pipefail; mkdir -p build/molecule; for scenario in $(MOLECULE_SCENARIOS); do \
		echo "== molecule test -s $$scenario"; \
		log=build/molecule/$$scenario.log; \
		if ! PATH="$(DEPLOY_BIN):$$PATH" $(DEPLOY_BIN)/molecule test -s $$scenario 2>&1 \
				| tee $$log; then \
			$(PY) molecule/shared/failure_digest.py $$log; \
			exit 1; \
		fi; \
	done
