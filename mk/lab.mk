# raftnode lab: systemd-nspawn test hosts (lab/raftlab). Needs root; see molecule/shared/README.md.
# The lab CLI is stdlib-only and runs with the system python3, before any virtualenv exists.
LAB_NAME ?= raftlab
LAB_HOSTS ?= n1,n2,n3,lb1,lb2
LAB_SUBNET ?= 10.77.0.0/24
LAB := python3 -m lab.raftlab

TEST_TARGETS += test-lab

.PHONY: lab-image lab-up lab-down lab-status lab-inventory test-lab deploy-venv

## Ansible, Molecule and testinfra (the `deploy` extra) in the project virtualenv.
deploy-venv: $(VENV)/.deploy-installed

$(VENV)/.deploy-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,deploy]'
	touch $@

## Build the guest image (Debian 12 + systemd, sshd, haproxy, keepalived), or reuse the cache.
lab-image:
	$(LAB) image

## Boot LAB_HOSTS as lab LAB_NAME and write its Ansible inventory to .lab/$(LAB_NAME).yml.
lab-up:
	@mkdir -p .lab
	$(LAB) up --name $(LAB_NAME) --hosts $(LAB_HOSTS) --subnet $(LAB_SUBNET) \
		--inventory .lab/$(LAB_NAME).yml

## Destroy lab LAB_NAME: guests, disks, bridge and state (safe to repeat).
lab-down:
	$(LAB) down --name $(LAB_NAME)
	rm -f .lab/$(LAB_NAME).yml

lab-status:
	$(LAB) status --name $(LAB_NAME)

lab-inventory:
	$(LAB) inventory --name $(LAB_NAME)

## Boots five hosts, drives Ansible over SSH and every fault primitive, then tears down
## (skipped with a reason unless root on Linux); plus the lab's pure parts.
test-lab: $(VENV)/.deploy-installed
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest -q -p no:cacheprovider -rs tests/lab
