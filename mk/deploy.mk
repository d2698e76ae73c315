# raftnode deployment bundle: Ansible roles, playbooks and inventories (roles/, playbooks/,
# inventories/, site.yml), and the tools that drive them (the `deploy` extra in .venv).
# The lab hosts they can run against are in mk/lab.mk.
WHEELHOUSE ?= build/wheelhouse
ANSIBLE_INVENTORY ?= inventories/production
ANSIBLE_LINT_PATHS := site.yml playbooks roles inventories molecule
YAMLLINT_PATHS := $(ANSIBLE_LINT_PATHS) .ansible-lint .yamllint .config/molecule requirements.yml files/monitoring
DEPLOY_BIN := $(CURDIR)/$(VENV)/bin
# Every Ansible command runs with the project's tools first on PATH and its ansible.cfg.
ANSIBLE_ENV := PATH="$(DEPLOY_BIN):$$PATH" ANSIBLE_CONFIG=$(CURDIR)/ansible.cfg
ANSIBLE_PLAYBOOK := $(ANSIBLE_ENV) $(DEPLOY_BIN)/ansible-playbook

TEST_TARGETS += lint-ansible

.PHONY: deploy-venv lint-ansible wheels deploy rolling-restart

## Ansible, ansible-lint, yamllint, Molecule and testinfra (the `deploy` extra) in .venv.
deploy-venv: $(VENV)/.deploy-installed

$(VENV)/.deploy-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev,deploy]'
	touch $@

## yamllint + ansible-lint (production profile) + a syntax check of the playbooks.
lint-ansible: $(VENV)/.deploy-installed
	$(ANSIBLE_ENV) $(DEPLOY_BIN)/yamllint --strict $(YAMLLINT_PATHS)
	$(ANSIBLE_ENV) $(DEPLOY_BIN)/ansible-lint --profile production $(ANSIBLE_LINT_PATHS)
	$(ANSIBLE_PLAYBOOK) --syntax-check -i $(ANSIBLE_INVENTORY) site.yml
	$(ANSIBLE_PLAYBOOK) --syntax-check -i $(ANSIBLE_INVENTORY) playbooks/rolling-restart.yml
	$(ANSIBLE_PLAYBOOK) --syntax-check -i $(ANSIBLE_INVENTORY) playbooks/remove-node.yml

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
	$(ANSIBLE_PLAYBOOK) -i $(ANSIBLE_INVENTORY) site.yml

## Restart every Raft node, followers first, the leader last.
rolling-restart: $(VENV)/.deploy-installed
	$(ANSIBLE_PLAYBOOK) -i $(ANSIBLE_INVENTORY) playbooks/rolling-restart.yml
