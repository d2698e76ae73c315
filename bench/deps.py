"""What the peer benchmarks need beyond the project's virtualenv, installed when missing:
Debian's etcd-server, wrk and haproxy (apt-get, as root), and PySyncObj from PyPI in a
virtualenv of its own (it must not share the project's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

# The command each package provides, and the Debian package that provides it.
DEBIAN_PACKAGES = {"etcd": "etcd-server", "wrk": "wrk", "haproxy": "haproxy"}
PYSYNCOBJ_REQUIREMENTS = ["pysyncobj==0.3.17", "tornado>=6.4"]


def ensure_commands(commands: list[str]) -> None:
    """apt-get install the packages behind any of ``commands`` that are not on PATH."""
    missing = [DEBIAN_PACKAGES[c] for c in commands if _which(c) is None]
    if not missing:
        return
    if os.geteuid() != 0:
        sys.exit(f"missing {', '.join(missing)}: run as root, or apt-get install them first")
    print(f"installing {' '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    still = [c for c in commands if _which(c) is None]
    if still:
        sys.exit(f"still missing after apt-get: {', '.join(still)}")


def _which(command: str) -> str | None:
    # haproxy lives in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(command) or shutil.which(command, path="/usr/sbin:/sbin")


def command_path(command: str) -> str:
    found = _which(command)
    if found is None:
        raise FileNotFoundError(command)
    return found


def ensure_pysyncobj_venv(venv: Path) -> Path:
    """A virtualenv with PySyncObj and Tornado; returns its python."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    if stamp.exists() and python.exists():
        return python
    print(f"creating {venv} with {' '.join(PYSYNCOBJ_REQUIREMENTS)}", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", *PYSYNCOBJ_REQUIREMENTS], check=True
    )
    stamp.write_text(" ".join(PYSYNCOBJ_REQUIREMENTS) + "\n")
    return python
