"""molecule/shared/failure_digest.py: the lines of a Molecule log that say why it failed."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "molecule" / "shared" / "failure_digest.py"
_spec = importlib.util.spec_from_file_location("failure_digest", SCRIPT)
assert _spec is not None and _spec.loader is not None
failure_digest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(failure_digest)

# As Molecule prints them: colour codes, the box around a command's output.
LOG = """\
\x1b[36mINFO    \x1b[0m \x1b[32mdefault\x1b[0m ➜ \x1b[33mverify\x1b[0m: \x1b[36mExecuting\x1b[0m
  \x1b[2m│\x1b[0m FAILED - RETRYING: [localhost]: Wait for the write loop to end (75 retries
  \x1b[2m│\x1b[0m ok: [localhost]
  \x1b[2m│\x1b[0m tests/test_default.py ssss.F....                                 [
  \x1b[2m│\x1b[0m ___________________ test_exactly_one_leader ___________________
  \x1b[2m│\x1b[0m     assert sorted(codes.values()) == [200, 503, 503], codes
  \x1b[2m│\x1b[0m E   AssertionError: {'n1': 503, 'n2': 503, 'n3': 503}
  \x1b[2m│\x1b[0m tests/test_default.py:168: AssertionError
  \x1b[2m│\x1b[0m ========== short test summary info ==========
  \x1b[2m│\x1b[0m FAILED tests/test_default.py::test_exactly_one_leader - AssertionError
  \x1b[2m│\x1b[0m ========== 1 failed, 54 passed, 26 skipped in 10.42s ==========
  \x1b[2m│\x1b[0m fatal: [n2]: FAILED! => {"changed": false, "msg": "no leader"}
\x1b[31mERROR   \x1b[0m Verifier tests failed
\x1b[32mdefault\x1b[0m ➜ \x1b[33mdestroy\x1b[0m: \x1b[32mExecuted: Successful\x1b[0m
"""


def test_the_failure_lines_are_picked_without_colour_or_box() -> None:
    assert failure_digest.telling_lines(LOG.splitlines()) == [
        "___________________ test_exactly_one_leader ___________________",
        "E   AssertionError: {'n1': 503, 'n2': 503, 'n3': 503}",
        "tests/test_default.py:168: AssertionError",
        "FAILED tests/test_default.py::test_exactly_one_leader - AssertionError",
        "========== 1 failed, 54 passed, 26 skipped in 10.42s ==========",
        'fatal: [n2]: FAILED! => {"changed": false, "msg": "no leader"}',
        "ERROR    Verifier tests failed",
    ]


def test_only_the_last_lines_are_kept() -> None:
    lines = [f"E   line {n}" for n in range(200)]
    assert failure_digest.telling_lines(lines, limit=3) == [
        "E   line 197",
        "E   line 198",
        "E   line 199",
    ]


def test_the_command_prints_the_digest_and_names_a_missing_log(tmp_path: Path) -> None:
    log = tmp_path / "default.log"
    log.write_text(LOG)
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(log)], capture_output=True, text=True, timeout=30
    )
    assert run.returncode == 0
    assert "FAILED tests/test_default.py::test_exactly_one_leader" in run.stdout
    missing = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "absent.log")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "absent.log" in missing.stderr
