"""The config file: the good file loads with the runbook's defaults; each bad one stops with
one line that names the key and the problem."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from redis_autoheal.cli import main
from redis_autoheal.config import load_config, parse_listen, read_remediator_secrets
from redis_autoheal.errors import ConfigError
from redis_autoheal.thresholds import parse_duration
from tests.support import REPO, free_port


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home directory with the runbook's key (mode 600) and a known_hosts file."""
    monkeypatch.setenv("HOME", str(tmp_path))
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    (ssh / "autobot_key").write_text("not parsed at load time\n")
    (ssh / "autobot_key").chmod(0o600)
    (ssh / "known_hosts").write_text("")
    return tmp_path


def secret(path: Path, text: str, mode: int = 0o600) -> Path:
    """A password or token file, with the mode an operator gives it (not the umask's)."""
    path.write_text(text)
    path.chmod(mode)
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yml"
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    message = str(e.value)
    assert "\n" not in message
    return message


def test_the_example_file_loads(home: Path) -> None:
    config = load_config(Path(__file__).parents[2] / "examples" / "config.yml")
    (target,) = config.targets
    assert target.name == "redis"
    assert target.ssh is not None
    assert target.ssh.key_file == home / ".ssh" / "autobot_key"


def test_minimal_file_gets_the_runbook_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "targets: [{name: redis}]\n"))
    (t,) = config.targets
    assert (t.redis.host, t.redis.port, t.unit, t.ssh) == ("127.0.0.1", 6379, "redis-server", None)
    # How often Redis is PINGed and after how many failures it is down: thresholds.yml's.
    shipped = yaml.safe_load((REPO / "alerts" / "thresholds.yml").read_text())
    ping_interval = parse_duration(shipped["scrape_intervals"]["connectivity"], "")
    assert config.health_check.interval_seconds == ping_interval == 30
    assert config.health_check.failure_threshold == shipped["alerts"]["RedisDown"]["failed_pings"]
    assert config.health_check.ping_timeout_seconds == 5
    assert config.health_check.systemd_timeout_seconds == 10
    assert config.health_check.performance_timeout_seconds == 15
    assert config.auto_recovery.max_attempts == 3
    assert config.auto_recovery.retry_delay_seconds == 10
    assert config.auto_recovery.stable_seconds == 60
    assert (config.circuit_breaker.max_recoveries, config.circuit_breaker.window_seconds) == (
        3,
        300,
    )
    assert config.permissions.stop == ("admin",)
    assert config.permissions.start == ("admin", "operator")
    assert config.permissions.reset_circuit_breaker == ("admin",)
    assert config.audit.max_bytes == 100 * 1024 * 1024
    assert config.audit.backup_count == 10
    assert config.audit.path == tmp_path / "logs/audit/redis_service_management.log"
    assert config.exporter.listen == "127.0.0.1:9121"
    assert config.remediator.listen == "127.0.0.1:9122"


def test_tilde_expands_and_relative_paths_follow_the_file(home: Path, tmp_path: Path) -> None:
    secret(tmp_path / "pw", "s3cret\n")
    config = load_config(
        write(
            tmp_path,
            "targets:\n"
            "  - name: a\n"
            "    redis: {password_file: pw}\n"
            "    ssh: {key_file: ~/.ssh/autobot_key}\n",
        )
    )
    t = config.targets[0]
    assert t.redis.password == "s3cret"
    assert t.redis.password_file == tmp_path / "pw"
    assert t.ssh is not None
    assert t.ssh.key_file == home / ".ssh/autobot_key"
    assert "s3cret" not in repr(config)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "targets:\n  - name: a\n  - name: b\n    redis: {port: 70000}\n",
            "targets[1].redis.port: must be 1-65535, got 70000",
        ),
        (
            "targets: [{name: a, redis: {hots: x}}]\n",
            "targets[0].redis.hots: unknown key (did you mean 'host'?)",
        ),
        ("targets: [{name: a}]\nhealth_chek: {}\n", "health_chek: unknown key (did you mean "),
        (
            "targets: [{name: a}]\nhealth_check: {interval_seconds: 0.5}\n",
            "health_check.interval_seconds: must be a whole number of seconds, at least 3, got 0.5",
        ),
        (
            "targets: [{name: a}]\nhealth_check: {failure_threshold: 101}\n",
            "health_check.failure_threshold: must be 1-100, got 101",
        ),
        ("targets: []\n", "targets: must list at least one"),
        ("exporter: {}\n", "targets: is required"),
        ("", "empty config file: targets is required"),
        ("targets: [{name: Redis}]\n", "targets[0].name: must match [a-z0-9_-]+ and be at most"),
        (f"targets: [{{name: {'a' * 64}}}]\n", "targets[0].name: must match [a-z0-9_-]+ and be at"),
        ("targets: [{name: a}, {name: a}]\n", "targets[1]: duplicate target name 'a'"),
        ("targets: [{redis: {}}]\n", "targets[0].name: is required"),
        ("targets: {a: 1}\n", "targets: must be a list, got a mapping"),
        ("targets: [{name: a, redis: {port: '6379'}}]\n", "must be an integer, got '6379'"),
        ("targets: [{name: a, redis: {port: true}}]\n", "must be an integer, got True"),
        ("targets: [{name: a, redis: {tls: maybe}}]\n", "must be true or false, got 'maybe'"),
        ("targets: [{name: a, redis: {host: ''}}]\n", "must be a non-empty string, got ''"),
        ("targets: [{name: a, redis: [1]}]\n", "targets[0].redis: must be a mapping, got a list"),
        (
            "targets: [{name: a, unit: 'redis; rm -rf /'}]\n",
            "targets[0].unit: unit name 'redis; rm -rf /' is not a systemd unit name",
        ),
        ("targets: [{name: a, unit: a..b}]\n", "targets[0].unit: unit name 'a..b' has an empty"),
        (
            "targets: [{name: a, redis: {password: x}}]\n",
            "targets[0].redis.password: not allowed here: put the password in a file",
        ),
        ("targets: [{name: a}]\nauto_recovery: {max_attempts: 0}\n", "must be 1-10, got 0"),
        (
            "targets: [{name: a}]\nauto_recovery: {retry_delay_seconds: -1}\n",
            "auto_recovery.retry_delay_seconds: must be >= 0, got -1",
        ),
        (
            "targets: [{name: a}]\npermissions: {stop: [root]}\n",
            "permissions.stop[0]: must be one of admin, operator, got 'root'",
        ),
        (
            "targets: [{name: a}]\naudit: {compress: zstd}\n",
            "audit.compress: must be one of gzip, none, got 'zstd'",
        ),
        (
            "targets: [{name: a}]\nexporter: {listen: 'localhost'}\n",
            "exporter.listen: must be HOST:PORT, got 'localhost'",
        ),
        (
            "targets: [{name: a}]\nexporter: {listen: '::1:9121'}\n",
            "exporter.listen: an IPv6 address must be in brackets",
        ),
        (
            "targets: [{name: a}]\nremediator: {listen: '127.0.0.1:0'}\n",
            "remediator.listen: port must be 1-65535, got 0",
        ),
        (
            "targets: [{name: a}]\nremediator: {allowed_networks: [10.0.0.0/33]}\n",
            "remediator.allowed_networks: must be an address or network",
        ),
        ("targets: [{name: a}]\nusers: [{id: u}]\n", "users[0].email: is required"),
        (
            "targets: [{name: a}]\nusers: [{id: u, email: e, role: root, token_file: t}]\n",
            "users[0].role: must be one of admin, operator, got 'root'",
        ),
        ("targets: [{name: a}]\ntargets: []\n", "duplicate key 'targets' at line 2 column 1"),
        ("targets: [{name: a}\n", "invalid YAML at line 2 column 1"),
        ("source: x\ntargets: [{name: a}]\n", "source: not allowed here"),
        (
            "targets: [{name: a, redis: {tls_ca_file: ca.pem}}]\n",
            "targets[0].redis.tls_ca_file: is set but redis.tls is false",
        ),
        (
            "targets: [{name: a, redis: {password_file: missing}}]\n",
            "targets[0].redis.password_file: cannot read ",
        ),
    ],
)
def test_bad_file_gives_one_line_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    assert message in error_of(tmp_path, text)


def test_empty_password_file_is_an_error(tmp_path: Path) -> None:
    secret(tmp_path / "pw", "\n")
    text = "targets: [{name: a, redis: {password_file: pw}}]\n"
    assert error_of(tmp_path, text).endswith("pw is empty")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_ssh_key_readable_by_others_is_refused(home: Path, tmp_path: Path, mode: int) -> None:
    key = home / ".ssh/autobot_key"
    key.chmod(mode)
    message = error_of(tmp_path, "targets: [{name: a, ssh: {}}]\n")
    assert message == (
        f"targets[0].ssh.key_file: {key} has mode {mode:03o}: an SSH key must be readable by "
        f"its owner only (chmod 600 {key})"
    )


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_ssh_key_owner_only_is_accepted(home: Path, tmp_path: Path, mode: int) -> None:
    (home / ".ssh/autobot_key").chmod(mode)
    assert load_config(write(tmp_path, "targets: [{name: a, ssh: {}}]\n")).targets[0].ssh


def test_missing_key_and_known_hosts(home: Path, tmp_path: Path) -> None:
    (home / ".ssh/known_hosts").unlink()
    assert error_of(tmp_path, "targets: [{name: a, ssh: {}}]\n").startswith(
        "targets[0].ssh.known_hosts: cannot read "
    )
    (home / ".ssh/autobot_key").unlink()
    assert "No such file" in error_of(tmp_path, "targets: [{name: a, ssh: {}}]\n")


def test_remediator_secrets_come_from_files(tmp_path: Path) -> None:
    secret(tmp_path / "hook", "hook-token\n")
    secret(tmp_path / "admin", "admin-token")
    secret(tmp_path / "op", "admin-token")
    text = (
        "targets: [{name: a}]\n"
        "remediator: {webhook_token_file: hook}\n"
        "users:\n"
        "  - {id: u1, email: a@example.invalid, role: admin, token_file: admin}\n"
    )
    config = load_config(write(tmp_path, text))
    assert read_remediator_secrets(config) == ("hook-token", {"u1": "admin-token"})
    shared = text + "  - {id: u2, email: o@example.invalid, role: operator, token_file: op}\n"
    with pytest.raises(ConfigError) as e:
        read_remediator_secrets(load_config(write(tmp_path, shared)))
    assert str(e.value) == (
        f"users[1].token_file: {tmp_path / 'op'} holds the same token as users[0].token_file "
        f"{tmp_path / 'admin'}: each user needs a token of their own"
    )
    assert "admin-token" not in str(e.value)
    (tmp_path / "hook").unlink()
    with pytest.raises(ConfigError, match=r"^remediator.webhook_token_file: cannot read "):
        read_remediator_secrets(config)


REMEDIATOR_FILES = (
    "targets: [{name: a}]\n"
    "remediator: {webhook_token_file: hook}\n"
    "users:\n"
    "  - {id: u1, email: a@example.invalid, role: admin, token_file: admin}\n"
    "  - {id: u2, email: o@example.invalid, role: operator, token_file: op}\n"
)


def remediator_files(tmp_path: Path, modes: dict[str, int] | None = None) -> Path:
    """A config with a webhook token and two users' tokens, each file mode 600 unless told."""
    modes = modes or {}
    for name in ("hook", "admin", "op"):
        secret(tmp_path / name, f"{name}-token-value\n", modes.get(name, 0o600))
    return write(tmp_path, REMEDIATOR_FILES)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o620], ids=oct)
def test_password_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    pw = secret(tmp_path / "pw", "s3cret\n", mode)
    message = error_of(tmp_path, "targets: [{name: a}, {name: b, redis: {password_file: pw}}]\n")
    assert message == (
        f"targets[1].redis.password_file: {pw} has mode {mode:03o}: a password file must be "
        f"readable by its owner only (chmod 600 {pw})"
    )
    assert "s3cret" not in message


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("hook", "remediator.webhook_token_file"),
        ("admin", "users[0].token_file"),
        ("op", "users[1].token_file"),
    ],
)
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644], ids=oct)
def test_token_file_open_to_others_is_refused(
    tmp_path: Path, name: str, key: str, mode: int
) -> None:
    config = load_config(remediator_files(tmp_path, {name: mode}))
    with pytest.raises(ConfigError) as e:
        read_remediator_secrets(config)
    path = tmp_path / name
    assert str(e.value) == (
        f"{key}: {path} has mode {mode:03o}: a token file must be readable by its owner only "
        f"(chmod 600 {path})"
    )
    assert "token-value" not in str(e.value)


@pytest.mark.parametrize("mode", [0o600, 0o400], ids=oct)
def test_secret_files_owner_only_are_accepted(tmp_path: Path, mode: int) -> None:
    secret(tmp_path / "pw", "s3cret\n", mode)
    config = load_config(remediator_files(tmp_path, dict.fromkeys(("hook", "admin", "op"), mode)))
    assert read_remediator_secrets(config)[0] == "hook-token-value"
    text = "targets: [{name: a, redis: {password_file: pw}}]\n"
    assert load_config(write(tmp_path, text)).targets[0].redis.password == "s3cret"


def test_a_secret_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pw").mkdir(mode=0o700)
    text = "targets: [{name: a, redis: {password_file: pw}}]\n"
    assert error_of(tmp_path, text) == (
        f"targets[0].redis.password_file: {tmp_path / 'pw'} is not a regular file"
    )


@pytest.mark.parametrize("user", [0, 1])
def test_webhook_token_equal_to_a_users_is_refused(tmp_path: Path, user: int) -> None:
    config = load_config(remediator_files(tmp_path))
    user_file = tmp_path / ("admin", "op")[user]
    secret(user_file, "  hook-token-value\n")  # the same token once stripped
    with pytest.raises(ConfigError) as e:
        read_remediator_secrets(config)
    assert str(e.value) == (
        f"remediator.webhook_token_file: {tmp_path / 'hook'} holds the same token as "
        f"users[{user}].token_file {user_file}: the webhook needs a token of its own"
    )
    assert "token-value" not in str(e.value)


def test_check_config_refuses_open_or_shared_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = remediator_files(tmp_path, {"op": 0o640})
    assert main(["check-config", "--config", str(path)]) == 1
    op = tmp_path / "op"
    assert capsys.readouterr().err == (
        f"redis-autoheal: error: users[1].token_file: {op} has mode 640: a token file must be "
        f"readable by its owner only (chmod 600 {op})\n"
    )
    # An exporter-only host reads no remediator file, so it does not judge them either.
    assert main(["check-config", "--config", str(path), "--service", "exporter"]) == 0
    capsys.readouterr()

    op.chmod(0o600)
    secret(tmp_path / "admin", "hook-token-value\n")
    assert main(["check-config", "--config", str(path)]) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        f"redis-autoheal: error: remediator.webhook_token_file: {tmp_path / 'hook'} holds the "
        f"same token as users[0].token_file {tmp_path / 'admin'}: the webhook needs a token of "
        "its own\n"
    )

    secret(tmp_path / "admin", "admin-token-value\n")
    assert main(["check-config", "--config", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: OK: 1 target(s): a\n"


@pytest.mark.parametrize("bad", ["hook-mode", "shared-token"])
def test_the_remediator_does_not_start_with_open_or_shared_secrets(
    tmp_path: Path, bad: str
) -> None:
    path = remediator_files(tmp_path, {"hook": 0o644} if bad == "hook-mode" else {})
    if bad == "shared-token":
        secret(tmp_path / "op", "hook-token-value\n")
    listen = f"127.0.0.1:{free_port()}"
    proc = subprocess.run(  # were it to start, it would serve until the hang guard kills it
        [sys.executable, "-m", "remediator", "--config", str(path), "--listen", listen],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    hook = tmp_path / "hook"
    expected = {
        "hook-mode": f"remediator.webhook_token_file: {hook} has mode 644: a token file must be "
        f"readable by its owner only (chmod 600 {hook})",
        "shared-token": f"remediator.webhook_token_file: {hook} holds the same token as "
        f"users[1].token_file {tmp_path / 'op'}: the webhook needs a token of its own",
    }[bad]
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        1,
        "",
        f"redis-autoheal: error: {expected}\n",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:9121", ("127.0.0.1", 9121)), ("[::1]:80", ("::1", 80)), ("h:1", ("h", 1))],
)
def test_parse_listen(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


def test_check_config_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, "targets: [{name: a}, {name: b}]\n")
    assert main(["check-config", "--config", str(good), "--service", "exporter"]) == 0
    assert capsys.readouterr().out == f"{good}: OK: 2 target(s): a, b\n"

    bad = write(tmp_path, "targets: [{name: a, redis: {port: 0}}]\n")
    assert main(["check-config", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err == "redis-autoheal: error: targets[0].redis.port: must be 1-65535, got 0\n"


def test_check_config_reads_remediator_files_unless_told_not_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "targets: [{name: a}]\nremediator: {webhook_token_file: nope}\n")
    assert main(["check-config", "--config", str(path), "--service", "exporter"]) == 0
    assert main(["check-config", "--config", str(path)]) == 1
    assert "remediator.webhook_token_file: cannot read" in capsys.readouterr().err


def test_unreadable_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "missing.yml")
    if os.geteuid() != 0:  # root reads anything
        path = write(tmp_path, "targets: [{name: a}]\n")
        path.chmod(0)
        with pytest.raises(ConfigError, match="Permission denied"):
            load_config(path)
