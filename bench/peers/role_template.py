"""One template of one of the repo's Ansible roles, rendered by Ansible itself (the role's
defaults, then the caller's variables), for running a role's daemon configuration on loopback
in tests and benchmarks (bench.peers.nginx, tests/haproxy)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"

RENDER_PLAYBOOK = """\
- name: Render one template of a role
  hosts: localhost
  connection: local
  gather_facts: false
  vars:
    ansible_python_interpreter: "{{ ansible_playbook_python }}"
  vars_files:
    - %(role)s/defaults/main.yml
  tasks:
    - name: Render %(template)s
      ansible.builtin.template:
        src: %(role)s/templates/%(template)s
        dest: "{{ rendered }}"
        mode: "0644"
"""


def available() -> bool:
    return ANSIBLE_PLAYBOOK.exists()


def render(role: str, template: str, directory: Path, variables: dict[str, object]) -> Path:
    """roles/``role``/templates/``template`` rendered into ``directory`` with ``variables``
    over the role's defaults."""
    playbook = directory / f"render-{role}.yml"
    playbook.write_text(RENDER_PLAYBOOK % {"role": REPO / "roles" / role, "template": template})
    rendered = directory / f"{role}.{template.removesuffix('.j2')}"
    extra = json.dumps({**variables, "rendered": str(rendered)})
    subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "-i", "localhost,", str(playbook), "-e", extra],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return rendered
