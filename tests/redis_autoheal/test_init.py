"""`redis-autoheal init` run as a user runs it (the real command, a real test host's sshd): what
it writes, that check-config passes on it, that a rerun changes nothing, and that every way it
can fail says so in one line and leaves the file system exactly as it was."""

from __future__ import annotations

import os
import pty
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from testhost.host import TestHost
from tests.support import HANG, install_steps

ALICE = "alice:admin:alice@example.org"


def cli(*args: str, stdin: int | None = subprocess.DEVNULL) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "redis_autoheal.cli", *args],
        capture_output=True,
        text=True,
        stdin=stdin,
        timeout=HANG,
        check=False,
    )


def init_args(config: Path, host: TestHost, *more: str) -> list[str]:
    return [
        "init",
        *("--config", str(config)),
        f"--target=vm3={host.address}",
        *("--user", ALICE),
        *("--state-dir", str(config.parent / "state")),
        *("--logs-dir", str(config.parent / "logs")),
        *more,
    ]


def host_fingerprint(host: TestHost) -> str:
    """What `ssh-keygen -lf` says on the host about its key: how a user learns the fingerprint."""
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(host.layout.host_key.with_suffix(".pub"))],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()[1]


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes | None]]:
    """Every path under `root` with its mode, owner and content: to show nothing changed."""
    if not root.exists():
        return {}
    entries = {}
    for path in sorted([root, *root.rglob("*")]):
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        entries[str(path.relative_to(root))] = (st.st_mode, st.st_uid, data)
    return entries


def refused(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """Assert a one-line refusal without a traceback that contains `words`; return it."""
    assert result.returncode == 1, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("redis-autoheal: error: ")
    for word in words:
        assert word in line
    return line


def test_init_writes_a_config_that_checks_and_a_rerun_keeps_it(tmp_path, test_host):
    config = tmp_path / "etc" / "config.yml"
    fingerprint = host_fingerprint(test_host)
    done = cli(*init_args(config, test_host, "--accept-host-key", fingerprint))
    assert done.returncode == 0, done.stderr
    assert f"vm3: ssh-ed25519 {fingerprint} (its fingerprint was given" in done.stdout

    etc = config.parent
    modes = {
        "config.yml": 0o644,
        "webhook.token": 0o600,
        "tokens": 0o700,
        "tokens/alice": 0o600,
        "ssh": 0o700,
        "ssh/id_ed25519": 0o600,
        "ssh/id_ed25519.pub": 0o644,
        "ssh/known_hosts": 0o644,
    }
    for name, mode in modes.items():
        assert (etc / name).stat().st_mode & 0o7777 == mode, name
    assert (etc / "webhook.token").read_text() != (etc / "tokens/alice").read_text()
    host_key = test_host.layout.host_key.with_suffix(".pub").read_text().split()[:2]
    assert (etc / "ssh/known_hosts").read_text() == f"{test_host.address} {' '.join(host_key)}\n"
    public = (etc / "ssh/id_ed25519.pub").read_text().strip()
    assert f"'restrict {public}'" in done.stdout

    checked = cli("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"{config}: OK: 1 target(s): vm3\n"

    before = snapshot(tmp_path)
    again = cli(*init_args(config, test_host))  # no flag: the key is in its known_hosts now
    assert again.returncode == 0, again.stderr
    assert snapshot(tmp_path) == before
    assert again.stdout.count("  kept     ") == len(modes) - 2  # all files; not the two dirs
    assert f"(already in {etc / 'ssh/known_hosts'})" in again.stdout
    # The same steps for the host, so they can be run again too.
    assert again.stdout.split("\nOn ", 1)[1] == done.stdout.split("\nOn ", 1)[1]


def test_without_a_terminal_or_a_flag_the_host_key_is_refused(tmp_path, test_host):
    line = refused(
        cli(*init_args(tmp_path / "etc" / "config.yml", test_host)),
        f"--accept-host-key {host_fingerprint(test_host)}",
        "Nothing was changed",
    )
    assert "without a terminal" in line
    assert not (tmp_path / "etc").exists()


def test_a_fingerprint_that_does_not_match_is_refused(tmp_path, test_host):
    other = "SHA256:" + "A" * 43
    refused(
        cli(*init_args(tmp_path / "etc" / "config.yml", test_host, "--accept-host-key", other)),
        host_fingerprint(test_host),
        "refused",
    )
    assert not (tmp_path / "etc").exists()


def at_terminal(args: list[str], answer: str) -> subprocess.CompletedProcess[str]:
    """Run the command with a terminal as stdin; answer its question when it is asked."""
    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "redis_autoheal.cli", *args],
        stdin=sub,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    os.close(sub)
    assert proc.stderr is not None
    asked = b""
    deadline = time.monotonic() + HANG
    while b"Type yes to accept: " not in asked:
        ready, _, _ = select.select([proc.stderr], [], [], max(0.0, deadline - time.monotonic()))
        chunk = os.read(proc.stderr.fileno(), 4096) if ready else b""
        if not chunk:
            proc.kill()
            pytest.fail(f"no question asked: {asked!r}")
        asked += chunk
    os.write(main, answer.encode() + b"\n")
    out, err = proc.communicate(timeout=HANG)
    os.close(main)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), (asked + err).decode())


def test_at_a_terminal_the_user_confirms_the_fingerprint_shown(tmp_path, test_host):
    config = tmp_path / "etc" / "config.yml"
    no = at_terminal(init_args(config, test_host), "no")
    assert no.returncode == 1
    assert host_fingerprint(test_host) in no.stderr
    assert no.stderr.rstrip().endswith("not accepted. Nothing was changed")
    assert not config.parent.exists()

    # As the README shows it.
    assert no.stderr.startswith(
        f"vm3: the SSH server at {test_host.address}:22 presents ssh-ed25519 "
        f"{host_fingerprint(test_host)}.\nCompare it with `ssh-keygen -lf "
        "/etc/ssh/ssh_host_*_key.pub` run on that host.\nTrust this key? Type yes to accept: "
    )

    yes = at_terminal(init_args(config, test_host), "yes")
    assert yes.returncode == 0, yes.stderr
    assert "(accepted at the terminal)" in yes.stdout
    assert cli("check-config", "--config", str(config)).returncode == 0


def test_a_known_hosts_file_given_is_trusted_and_a_contradicting_one_refused(tmp_path, test_host):
    config = tmp_path / "etc" / "config.yml"
    wrong = tmp_path / "wrong_known_hosts"
    # Another host's key under this host's address: what an intercepted connection looks like.
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    wrong.write_text(f"{test_host.address} {other.with_suffix('.pub').read_text()}")
    refused(
        cli(*init_args(config, test_host, "--known-hosts", str(wrong))),
        f"not the key {wrong} holds",
    )
    assert not config.parent.exists()

    done = cli(*init_args(config, test_host, "--known-hosts", str(test_host.known_hosts)))
    assert done.returncode == 0, done.stderr
    assert f"(listed in {test_host.known_hosts})" in done.stdout


def test_an_unreachable_host_is_named_and_nothing_is_written(tmp_path, test_host):
    config = tmp_path / "etc" / "config.yml"
    closed = cli(*init_args(config, test_host, "--ssh-port", "2222"))
    refused(closed, f"vm3: cannot fetch the SSH host key of {test_host.address}:2222", "refused")
    test_host.blackhole()
    silent = cli(*init_args(config, test_host, "--connect-timeout", "1"))
    refused(silent, f"{test_host.address}:22: no answer in 1s")
    assert not config.parent.exists()


def test_a_server_that_never_answers_on_loopback_times_out(tmp_path):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        result = cli(
            "init",
            *("--config", str(tmp_path / "etc" / "config.yml")),
            "--target=local=127.0.0.1",
            *("--ssh-port", str(port), "--connect-timeout", "0.5"),
        )
    refused(result, f"local: cannot fetch the SSH host key of 127.0.0.1:{port}: no answer")
    assert not (tmp_path / "etc").exists()


def test_existing_files_are_replaced_only_with_force(tmp_path, test_host):
    config = tmp_path / "etc" / "config.yml"
    fingerprint = host_fingerprint(test_host)
    assert cli(*init_args(config, test_host, "--accept-host-key", fingerprint)).returncode == 0
    secrets = {p: (config.parent / p).read_bytes() for p in ("webhook.token", "ssh/id_ed25519")}

    before = snapshot(tmp_path)
    changed = init_args(config, test_host, "--unit", "redis-cache")
    refused(cli(*changed), f"{config} exists and differs", "--force")
    assert snapshot(tmp_path) == before

    forced = cli(*changed, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"replaced {config}" in forced.stdout
    assert "unit: redis-cache" in config.read_text()
    # Secrets are kept: the key already installed on the hosts and the tokens handed out.
    assert {p: (config.parent / p).read_bytes() for p in secrets} == secrets

    token = config.parent / "tokens" / "alice"
    token.chmod(0o644)
    before = snapshot(tmp_path)
    refused(cli(*changed), f"{token} exists but cannot be used", "mode 644", "--force")
    assert snapshot(tmp_path) == before
    assert cli(*changed, "--force").returncode == 0
    assert token.stat().st_mode & 0o777 == 0o600
    assert cli("check-config", "--config", str(config)).returncode == 0


def test_a_changed_host_key_is_refused_until_forced_and_confirmed(tmp_path, test_host):
    config = tmp_path / "etc" / "config.yml"
    first = cli(*init_args(config, test_host, "--accept-host-key", host_fingerprint(test_host)))
    assert first.returncode == 0, first.stderr
    test_host.change_host_key()
    before = snapshot(tmp_path)
    refused(cli(*init_args(config, test_host)), "the host key changed", "--force")
    refused(cli(*init_args(config, test_host, "--force")), "without a terminal")
    assert snapshot(tmp_path) == before
    forced = cli(
        *init_args(config, test_host, "--force", "--accept-host-key", host_fingerprint(test_host))
    )
    assert forced.returncode == 0, forced.stderr
    assert host_fingerprint(test_host) in forced.stdout


def test_a_write_that_fails_midway_is_undone(tmp_path, test_host):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "tokens").write_text("a file where init wants a directory\n")
    before = snapshot(tmp_path)
    result = cli(
        *init_args(etc / "config.yml", test_host, "--accept-host-key", host_fingerprint(test_host))
    )
    refused(
        result, f"cannot write {etc / 'tokens' / 'alice'}: Not a directory", "nothing was changed"
    )
    assert snapshot(tmp_path) == before  # ssh/ made and the staged files written: all removed


def test_a_read_only_directory_is_named_and_left_alone(tmp_path, test_host):
    readonly = tmp_path / "ro"
    readonly.mkdir()
    args = init_args(readonly / "etc" / "config.yml", test_host)
    args += ["--accept-host-key", host_fingerprint(test_host)]
    before = snapshot(tmp_path)
    # A read-only mount, seen only by this command: root ignores mode bits, not a mount.
    result = subprocess.run(
        [
            *("unshare", "--mount", "--propagation", "private", "--"),
            *("sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', str(readonly)),
            *(sys.executable, "-m", "redis_autoheal.cli", *args),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=HANG,
        check=False,
    )
    refused(result, f"cannot write {readonly / 'etc'}: Read-only file system")
    assert snapshot(tmp_path) == before


def test_the_service_user_owns_the_secrets(tmp_path, test_host):
    config = tmp_path / "etc" / "config.yml"
    fingerprint = host_fingerprint(test_host)
    refused(
        cli(*init_args(config, test_host, "--service-user", "no-such-user-here")),
        "--service-user no-such-user-here: no such user",
    )
    assert not config.parent.exists()
    done = cli(
        *init_args(config, test_host, "--service-user", "nobody", "--accept-host-key", fingerprint)
    )
    assert done.returncode == 0, done.stderr
    nobody = 65534
    for name in ("webhook.token", "tokens", "tokens/alice", "ssh", "ssh/id_ed25519"):
        assert (config.parent / name).stat().st_uid == nobody, name
    assert config.stat().st_uid == os.getuid()
    assert "(secrets owned by nobody)" in done.stdout


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--target", "VM3=10.0.0.1"], ["targets[0].name: must match [a-z0-9_-]+"]),
        (["--target", "vm3"], ["--target: must be NAME=HOST"]),
        (["--target", "vm3=a;b"], ["HOST must be an address or host name"]),
        (["--target", "a=h", "--target", "a=g"], ["target name 'a' given twice"]),
        (["--target", "a=h", "--ssh-user", "x y"], ["--ssh-user must be a user name"]),
        (["--target", "a=h", "--user", "bob:root:b@x"], ["users[0].role: must be one of"]),
        (["--target", "a=h", "--redis-port", "70000"], ["redis.port: must be 1-65535"]),
        (["--target", "a=h", "--ssh-from", "'; reboot"], ["--ssh-from must be addresses"]),
        (["--target", "a=h", "--user", "../../x:admin:e@x"], ["ID must be letters, digits"]),
        (["--target", "a=h", "--connect-timeout", "-1"], ["--connect-timeout: must be a number"]),
    ],
)
def test_bad_flags_are_named_before_anything_happens(tmp_path, flags, words):
    result = cli("init", "--config", str(tmp_path / "etc" / "config.yml"), *flags)
    assert result.returncode in (1, 2)  # 2: argparse's usage error
    assert "Traceback" not in result.stderr
    assert all(w in result.stderr for w in words), result.stderr
    assert not (tmp_path / "etc").exists()


def test_what_it_prints_installs_on_the_host_and_the_key_logs_in(tmp_path, test_host):
    """The printed steps 1 and 2, run as root on the host, let the new key run the whitelist."""
    config = tmp_path / "etc" / "config.yml"
    done = cli(*init_args(config, test_host, "--accept-host-key", host_fingerprint(test_host)))
    assert done.returncode == 0, done.stderr
    steps = install_steps(done.stdout)
    test_host.run(["rm", "/etc/sudoers.d/autobot-redis"])  # the test host's own copy
    test_host.layout.authorized_keys.write_text("")  # and its own key: only init's may log in
    for number in (1, 2):
        ran = test_host.run(["bash", "-euc", steps[number]])
        assert ran.returncode == 0, ran.stderr
    again = test_host.run(["bash", "-euc", steps[1]])  # a step run twice adds nothing
    assert again.returncode == 0
    assert test_host.layout.authorized_keys.read_text().count("restrict ") == 1
    restart = ssh_with(config, test_host, "sudo -n systemctl restart redis-server")
    assert restart.returncode == 0, restart.stderr
    assert test_host.invocations(["restart"])[-1].sudo_user == "autobot"
    other = ssh_with(config, test_host, "sudo -n systemctl restart ssh")
    assert other.returncode != 0  # outside the whitelist


def ssh_with(config: Path, host: TestHost, command: str) -> subprocess.CompletedProcess[str]:
    """OpenSSH as the remediator logs in: init's key and known_hosts, nothing else."""
    ssh_dir = config.parent / "ssh"
    argv = [
        *("ssh", "-F", "none", "-i", str(ssh_dir / "id_ed25519")),
        *("-o", f"UserKnownHostsFile={ssh_dir / 'known_hosts'}"),
        *("-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"),
        *("-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes"),
        f"{host.user}@{host.address}",
        command,
    ]
    return subprocess.run(argv, capture_output=True, text=True, timeout=HANG, check=False)


def test_the_printed_unit_drop_in_is_what_the_test_host_runs(tmp_path, test_host):
    """Step 3 cannot be installed here (no systemd to read it); the test host's unit model
    runs redis-server with exactly its settings, which the step states."""
    done = cli(
        *init_args(
            tmp_path / "etc" / "config.yml",
            test_host,
            "--accept-host-key",
            host_fingerprint(test_host),
        )
    )
    step = install_steps(done.stdout)[3]
    assert "/etc/systemd/system/redis-server.service.d/redis-autoheal.conf" in step
    assert "Restart=no\nExecReload=/bin/kill -HUP $MAINPID\n" in step
    assert step.endswith("systemctl daemon-reload\n")
    assert test_host.ssh("sudo -n systemctl reload redis-server").returncode == 0
    status = test_host.ssh("systemctl status redis-server").stdout
    assert "ExecReload=/bin/kill -HUP $MAINPID" in status
