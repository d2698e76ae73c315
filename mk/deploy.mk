# raftnode deployment bundle: Ansible roles, playbooks and inventories (roles/, playbooks/,
# inventories/, site.yml). The deploy tools come from the `deploy` extra, installed by
# $(VENV)/.deploy-installed (mk/lab.mk).
WHEELHOUSE ?= build/wheelhouse
ANSIBLE_INVENTORY ?= inventories/production
ANSIBLE_LINT_PATHS := site.yml playbooks roles inventories molecule
YAMLLINT_PATHS := $(ANSIBLE_LINT_PATHS) .ansible-lint .yamllint .config/molecule
DEPLOY_BIN := $(CURDIR)/$(VENV)/bin

TEST_TARGETS += lint-ansible

.PHONY: lint-ansible wheels deploy rolling-restart

## yamllint + ansible-lint (production profile) + a syntax check of site.yml.
lint-ansible: $(VENV)/.deploy-installed
	PATH="$(DEPLOY_BIN):$$PATH" $(VENV)/bin/yamllint --strict $(YAMLLINT_PATHS)
	PATH="$(DEPLOY_BIN):$$PATH" ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(VENV)/bin/ansible-lint --profile production $(ANSIBLE_LINT_PATHS)
	PATH="$(DEPLOY_BIN):$$PATH" ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(VENV)/bin/ansible-playbook --syntax-check -i $(ANSIBLE_INVENTORY) site.yml
	PATH="$(DEPLOY_BIN):$$PATH" ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(VENV)/bin/ansible-playbook --syntax-check -i $(ANSIBLE_INVENTORY) playbooks/rolling-restart.yml

## The wheels the raftnode role ships: this checkout and its dependencies (hosts install
## them with pip --no-index). Built for the controller's Python: hosts need the same
## minor version (Debian 12: 3.11).
wheels: $(VENV)/.installed
	rm -rf $(WHEELHOUSE)
	mkdir -p $(WHEELHOUSE)
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 315532800) \
		$(PY) -m pip wheel --quiet --no-cache-dir --wheel-dir $(WHEELHOUSE) .
	@ls $(WHEELHOUSE)

## ansible-playbook site.yml against ANSIBLE_INVENTORY (default: inventories/production).
deploy: $(VENV)/.deploy-installed wheels
	PATH="$(DEPLOY_BIN):$$PATH" ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(VENV)/bin/ansible-playbook -i $(ANSIBLE_INVENTORY) site.yml

## Restart every Raft node, followers first, the leader last.
rolling-restart: $(VENV)/.deploy-installed
	PATH="$(DEPLOY_BIN):$$PATH" ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg $(VENV)/bin/ansible-playbook -i $(ANSIBLE_INVENTORY) playbooks/rolling-restart.yml

## A running cluster on local test hosts: boots the lab (mk/lab.mk: LAB_NAME, LAB_HOSTS,
## LAB_SUBNET), builds the wheels and runs site.yml onto it. Then, with the default subnet:
##   curl -X POST http://10.77.0.100:8080/kv -H 'Content-Type: application/json' -d '{"key":"a","value":"1"}'
## `make lab-down` removes it.
.PHONY: lab
lab: $(VENV)/.deploy-installed wheels lab-up
	PATH="$(DEPLOY_BIN):$$PATH" ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg RAFTLAB_NAME=$(LAB_NAME) \
		$(VENV)/bin/ansible-playbook -i inventories/lab -i .lab/$(LAB_NAME).yml site.yml
	PATH="$(DEPLOY_BIN):$$PATH" ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg RAFTLAB_NAME=$(LAB_NAME) \
		$(VENV)/bin/ansible-playbook -i inventories/lab -i .lab/$(LAB_NAME).yml playbooks/smoke-test.yml
	@echo "lab: cluster behind http://$$(python3 -m lab.raftlab --name $(LAB_NAME) status | sed -n 's/.* vip \([0-9.]*\).*/\1/p'):8080"
	@python3 -m lab.raftlab --name $(LAB_NAME) status
	@echo "lab: on a host: python3 -m lab.raftlab --name $(LAB_NAME) exec n1 -- systemctl status raftnode"
	@echo "lab: over SSH:  ssh -i $$(sed -n 's/.*ansible_ssh_private_key_file: *//p' .lab/$(LAB_NAME).yml | head -1) root@ADDRESS (addresses above)"
	@echo "lab: make lab-down removes it all"

## Every Molecule scenario on lab hosts, one after another (root): default (converge,
## idempotence, routing), failover, quorum, lb-failover. `make test` runs them last.
MOLECULE_SCENARIOS ?= default failover quorum lb-failover
.PHONY: test-molecule
test-molecule: $(VENV)/.deploy-installed
	@set -e; for scenario in $(MOLECULE_SCENARIOS); do \
		echo "== molecule test -s $$scenario"; \
		PATH="$(DEPLOY_BIN):$$PATH" $(VENV)/bin/molecule test -s $$scenario; \
	done
