"""Why a Molecule scenario failed, for the end of its log.

A scenario's log runs to thousands of lines and ends with Molecule's recap and the destroy
step, so a run whose output is kept only from the end (CI) loses the lines that say what broke:
pytest's failure summary and assertion lines, Ansible's `fatal:` results. `make test-molecule`
keeps each scenario's log and, when one fails, prints what this module picks out of it.

    python3 molecule/shared/failure_digest.py build/molecule/default.log
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from pathlib import Path

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Molecule draws each command's output inside a box: "  │ text".
BOX_PREFIX = re.compile(r"^\s*[│┌└]\s?")
# What says why: pytest's summary lines and assertion lines, the test file and line that
# failed, Ansible's failed results (not its retries), and Molecule's own errors.
TELLING = re.compile(
    r"^(FAILED |ERROR |E\s{2,}|_{3,} \S.* _{3,}$|\S+\.py:\d+: |fatal: \[|failed: \[|"
    r"={3,} .*(failed|error).* ={3,}$|.*\b(ERROR|CRITICAL)\b)"
)
NOT_TELLING = re.compile(r"^FAILED - RETRYING:")


def plain(line: str) -> str:
    """A log line without colour codes and Molecule's box drawing."""
    return BOX_PREFIX.sub("", ANSI_ESCAPE.sub("", line)).rstrip()


def telling_lines(lines: Iterable[str], limit: int = 80) -> list[str]:
    """The last `limit` lines that say why the run failed, in log order."""
    picked = [
        text for text in map(plain, lines) if TELLING.match(text) and not NOT_TELLING.match(text)
    ]
    return picked[-limit:]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(f"usage: {argv[0]} MOLECULE_LOG", file=sys.stderr)
        return 2
    log = Path(argv[1])
    try:
        text = log.read_text(errors="replace")
    except OSError as error:
        print(f"failure_digest: cannot read {log}: {error.strerror}", file=sys.stderr)
        return 2
    found = telling_lines(text.splitlines())
    print(f"== why the scenario failed ({len(found)} lines picked from {log})")
    for line in found or ["(no failure line found: read the whole log)"]:
        print(f"   {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
