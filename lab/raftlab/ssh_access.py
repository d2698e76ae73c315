"""The per-lab SSH key Ansible uses, and ssh invocations that trust fresh guests."""

from __future__ import annotations

from pathlib import Path

from .commands import run_command

# Every lab host gets a new host key on creation: pinning it would only break reruns.
SSH_OPTIONS: tuple[str, ...] = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
)


def ensure_key(private_key: Path) -> str:
    """Create the lab's ed25519 key pair if absent; return the public key line."""
    private_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not private_key.exists():
        run_command(
            [
                "ssh-keygen",
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "raftlab",
                "-f",
                str(private_key),
            ],
            timeout=30,
        )
    return private_key.with_suffix(".pub").read_text()


def ssh_argv(
    private_key: Path, address: str, command: list[str], connect_timeout: int = 3
) -> list[str]:
    return [
        "ssh",
        "-i",
        str(private_key),
        "-o",
        "BatchMode=yes",
        "-o",
        f"ConnectTimeout={connect_timeout}",
        *SSH_OPTIONS,
        f"root@{address}",
        "--",
        *command,
    ]
