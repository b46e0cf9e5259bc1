"""The skip policy of tests/conftest.py and testhost.pytest_plugin, tried on a tiny test file
run by pytest in a subprocess as a user that is not root (nobody, through setpriv, when these
tests run as root): root tests skip with the reason, or fail under CI; under CI nothing skips;
the users of the host fixtures are marked root without asking; a test that needs root without
the marker fails."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534
FAILED = {"failure", "error"}  # JUnit: a failure in the test, an error in its setup

TINY = """
import pytest

from tests.support import require_root


@pytest.mark.root
def test_marked():
    pass


def test_uses_a_host(test_host):
    pass


def test_needs_root_unmarked():
    require_root()


def test_plain():
    pass


def test_skips_for_a_missing_file():
    pytest.skip("no such file here")


@pytest.mark.xfail(reason="known")
def test_expected_to_fail():
    raise AssertionError
"""


@pytest.fixture
def tiny() -> Iterator[Path]:
    """A directory nobody can use, holding the tiny test file (not under pytest's tmp_path,
    which only root may enter)."""
    directory = Path(tempfile.mkdtemp(prefix="skip-policy-"))
    try:
        (directory / "test_tiny.py").write_text(TINY)
        if os.geteuid() == 0:
            for path in [directory, *directory.iterdir()]:
                os.chown(path, NOBODY, NOBODY)
        yield directory
    finally:
        shutil.rmtree(directory)


def _run(directory: Path, *args: str, ci: str | None) -> dict[str, tuple[str, str]]:
    """Run pytest on the tiny file as a user that is not root; each test's outcome and
    message, from the JUnit report."""
    drop = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        assert setpriv is not None, "util-linux's setpriv is part of every Debian"
        drop = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "PYTEST_ADDOPTS"}}
    env |= {"PYTHONPATH": str(REPO), "HOME": str(directory), "PYTHONDONTWRITEBYTECODE": "1"}
    if ci is not None:
        env["CI"] = ci
    report = directory / "report.xml"
    argv = [
        *drop,
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "tests.conftest",
        "-p",
        "no:cacheprovider",
        f"--rootdir={directory}",
        f"--junit-xml={report}",
        *args,
        str(directory / "test_tiny.py"),
    ]
    done = subprocess.run(
        argv, cwd=directory, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert report.exists(), done.stdout + done.stderr
    outcomes = {}
    for case in ET.parse(report).iter("testcase"):
        result = next(iter(case), None)
        if result is None:
            outcomes[case.get("name", "")] = ("passed", "")
        else:
            outcomes[case.get("name", "")] = (result.tag, result.get("message", ""))
    report.unlink()
    return outcomes


def test_without_ci_root_tests_skip_with_the_reason(tiny):
    got = _run(tiny, ci=None)
    assert got["test_marked"] == ("skipped", "needs root: network namespaces, sshd and sudo")
    assert got["test_uses_a_host"] == ("skipped", "needs root: network namespaces, sshd and sudo")
    assert got["test_needs_root_unmarked"][0] in FAILED
    assert "not marked" in got["test_needs_root_unmarked"][1]
    assert got["test_plain"] == ("passed", "")
    assert got["test_skips_for_a_missing_file"] == ("skipped", "no such file here")
    assert got["test_expected_to_fail"][0] == "skipped"  # JUnit's word for an xfail


@pytest.mark.parametrize("ci", ["true", "1"])
def test_under_ci_nothing_skips(tiny, ci):
    got = _run(tiny, ci=ci)
    for name in ("test_marked", "test_uses_a_host"):
        outcome, message = got[name]
        assert outcome in FAILED, name
        assert "needs root" in message, name
        assert "CI is set" in message, name
    assert got["test_needs_root_unmarked"][0] in FAILED
    assert got["test_plain"] == ("passed", "")
    outcome, message = got["test_skips_for_a_missing_file"]
    assert outcome in FAILED
    assert "no such file here" in message
    assert got["test_expected_to_fail"][0] == "skipped"  # an xfail is no skip


@pytest.mark.parametrize("ci", ["", "false", "0"])
def test_a_ci_variable_that_says_no_is_not_ci(tiny, ci):
    assert _run(tiny, ci=ci)["test_marked"][0] == "skipped"


def test_the_host_fixtures_users_are_marked_root(tiny):
    # -m "not root" leaves out the test that asked for a host without saying it needs root.
    got = _run(tiny, "-m", "not root", ci="true")
    assert "test_uses_a_host" not in got
    assert "test_marked" not in got
    assert got["test_plain"] == ("passed", "")
