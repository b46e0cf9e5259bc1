"""The `coordination` section: local by default; etcd's endpoints, TLS files and lease TTL
checked at load time, each refusal naming its key."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from redis_autoheal.config import CoordinationSettings, load_config
from redis_autoheal.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

TARGETS = "targets: [{name: redis}]\n"


def load(tmp_path: Path, coordination: str) -> CoordinationSettings:
    path = tmp_path / "config.yml"
    path.write_text(TARGETS + coordination)
    return load_config(path).coordination


def test_by_default_one_remediator_alone(tmp_path: Path) -> None:
    coordination = load(tmp_path, "")
    assert coordination.backend == "local"


def test_etcd_endpoints_and_ttl(tmp_path: Path) -> None:
    text = (
        "coordination: {backend: etcd, etcd: {endpoints: "
        "[http://10.0.0.1:2379, https://etcd.internal:2379], lease_ttl_seconds: 15}}\n"
    )
    coordination = load(tmp_path, text)
    assert coordination.backend == "etcd"
    etcd = coordination.etcd
    assert etcd.endpoints == ("http://10.0.0.1:2379", "https://etcd.internal:2379")
    assert etcd.lease_ttl_seconds == 15
    assert etcd.fenced_command is None  # the runbook's `sudo -n systemctl` commands


def test_the_fenced_wrapper(tmp_path: Path) -> None:
    text = (
        "coordination: {backend: etcd, etcd: "
        "{fenced_command: /usr/local/sbin/redis-autoheal-fenced}}\n"
    )
    etcd = load(tmp_path, text).etcd
    assert etcd.fenced_command == "/usr/local/sbin/redis-autoheal-fenced"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("coordination: {backend: zookeeper}", "coordination.backend"),
        ("coordination: {etcd: {endpoints: []}}", "coordination.etcd.endpoints"),
        ("coordination: {etcd: {endpoints: [10.0.0.1:2379]}}", "coordination.etcd.endpoints"),
        ("coordination: {etcd: {endpoints: ['http://a:1/x']}}", "coordination.etcd.endpoints"),
        ("coordination: {etcd: {lease_ttl_seconds: 1}}", "coordination.etcd.lease_ttl_seconds"),
        ("coordination: {etcd: {tls_ca_file: /nonexistent/ca.pem}}", "coordination.etcd.tls_ca"),
        ("coordination: {etcd: {leas_ttl_seconds: 5}}", "coordination.etcd.leas_ttl_seconds"),
        ("coordination: {etcd: {fenced_command: fenced}}", "coordination.etcd.fenced_command"),
        ("coordination: {etcd: {fenced_command: '/a b'}}", "coordination.etcd.fenced_command"),
        ("coordination: {etcd: {fenced_command: /a/../sh}}", "coordination.etcd.fenced_command"),
        (  # a fence is an etcd claim's revision: nothing to fence with alone
            "coordination: {etcd: {fenced_command: /usr/local/sbin/redis-autoheal-fenced}}",
            "coordination.etcd.fenced_command",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_its_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text + "\n")
    assert str(e.value).startswith(key), str(e.value)


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("not parsed at load time\n")
    with pytest.raises(ConfigError, match=r"^coordination.etcd.tls_cert_file: .*go together"):
        load(tmp_path, f"coordination: {{etcd: {{tls_cert_file: {cert}}}}}\n")
