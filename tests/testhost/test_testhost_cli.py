"""`python -m testhost` as the README's demo section uses it: no --dir (one host in the default
directory), from a directory that is not the checkout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from testhost import TestHost
from testhost.__main__ import DEFAULT_DIR
from tests.support import HANG, require_root
from tests.testhost.test_testhost_lifecycle import assert_gone, footprint

REPO = Path(__file__).resolve().parents[2]


def run_testhost(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testhost", *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=HANG,
        check=False,
    )


@pytest.mark.root
def test_the_default_dir_from_elsewhere(tmp_path: Path) -> None:
    require_root()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    absent = run_testhost("status", cwd=elsewhere)
    assert (absent.returncode, absent.stderr) == (
        1,
        f"testhost: no test host in {DEFAULT_DIR} (python -m testhost up)\n",
    )
    up = run_testhost("up", cwd=elsewhere)
    assert up.returncode == 0, up.stderr
    host = TestHost.load(DEFAULT_DIR)
    fp = footprint(host)
    try:
        assert json.loads(up.stdout)["workdir"] == str(DEFAULT_DIR)
        again = run_testhost("up", cwd=elsewhere)
        assert again.returncode == 1
        assert again.stderr == (
            f"testhost: a test host is up in {DEFAULT_DIR}: `python -m testhost down` first, "
            "or give another --dir\n"
        )
        fault = run_testhost("fault", "kill9", cwd=elsewhere)
        assert fault.returncode == 0, fault.stderr
        host.wait_state("failed", HANG)
        status = run_testhost("status", cwd=elsewhere)
        assert json.loads(status.stdout)["unit_state"] == "failed"
    finally:
        down = run_testhost("down", cwd=elsewhere)
    assert down.returncode == 0, down.stderr
    assert_gone(fp)
    assert not DEFAULT_DIR.exists()


def demo_section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("**The demo**")
    return readme[start : readme.index("\n#", start)]


def test_the_readme_documents_every_flag_of_the_demo_and_every_fault() -> None:
    import demo.__main__  # noqa: PLC0415 -- only this test needs the demo's parser
    from testhost.__main__ import FAULTS, parser  # noqa: PLC0415

    text = demo_section()
    demo_parser = demo.__main__.parser()
    flags = {s for a in demo_parser._actions for s in a.option_strings if s.startswith("--")}
    choices = {c for a in demo_parser._actions if a.dest == "fault" for c in a.choices or ()}
    commands = set(parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr, arg-type]
    wanted = (flags - {"--help"}) | {f"--fault {c}" for c in choices} | set(FAULTS) | commands
    assert {w for w in wanted if f"`{w}" not in text} == set()
