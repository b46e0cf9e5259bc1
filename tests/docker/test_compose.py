"""docker-compose.yml: valid, and every file it builds from or mounts is in the repository.

No Docker engine runs here: Debian's docker-compose validates and resolves the file, and the
tests check what the engine would need. The compose stack's Prometheus and Alertmanager configs
are generated from alerts/ (tests/alerts checks they are current); here they are checked with
the same tools as the shipped ones, and against the compose file's services and mounts.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import yaml

from redis_autoheal.config import load_config, load_settings, read_remediator_secrets
from tests.dashboards.dashboard_json import REPO
from tests.support import require_binary

COMPOSE = REPO / "docker-compose.yml"
SECRETS = REPO / "docker" / "secrets"
GEN_SECRETS = REPO / "docker" / "gen-secrets.sh"
SECRETS_INIT = REPO / "docker" / "secrets-init.sh"


@pytest.fixture(scope="module")
def resolved():
    """`docker-compose config`: the file validated, with paths made absolute."""
    binary = require_binary("docker-compose")
    done = subprocess.run(
        [binary, "--project-directory", str(REPO), "-f", str(COMPOSE), "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, "COMPOSE_INTERACTIVE_NO_CLI": "1"},
    )
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


@pytest.fixture(scope="module")
def raw():
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory):
    """The secrets gen-secrets.sh makes, in a directory of the test's own."""
    require_binary("ssh-keygen")
    out = tmp_path_factory.mktemp("secrets")
    done = subprocess.run(
        ["sh", str(GEN_SECRETS), str(out)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    return out


def _tracked() -> set[str] | None:
    if not (REPO / ".git").exists():
        return None
    done = subprocess.run(
        ["git", "ls-files", "-z"], capture_output=True, check=True, cwd=REPO, text=True
    )
    return set(done.stdout.split("\0"))


def _in_repo(path: Path, tracked: set[str] | None) -> None:
    """`path` exists, and (in a git checkout) is tracked or under a tracked directory."""
    assert path.exists(), f"{path} does not exist"
    if tracked is None:
        return
    rel = path.relative_to(REPO).as_posix()
    if path.is_dir():
        assert any(t.startswith(rel + "/") for t in tracked), f"{rel}/: nothing in it is tracked"
    else:
        assert rel in tracked, f"{rel} is not tracked by git: a fresh clone would lack it"


def test_no_version_key(raw):
    assert "version" not in raw, "the compose spec has no version key"


HA = {
    "etcd-1",
    "etcd-2",
    "etcd-3",
    "remediator-1",
    "remediator-2",
    "alertmanager-1",
    "alertmanager-2",
    "prometheus-ha",
}


def test_services(resolved):
    assert set(resolved["services"]) == {
        "secrets-init",
        "redis",
        "redis-host",
        "exporter",
        "remediator",
        "prometheus",
        "alertmanager",
        "grafana",
        *HA,
    }
    assert resolved["services"]["redis"]["image"].startswith("redis:7")


def test_the_ha_profile_only_adds_to_the_stack(resolved):
    """`docker compose up` runs the stack as before: only the `ha` services have a profile,
    and no other service depends on one of them."""
    services = resolved["services"]
    for name, service in services.items():
        assert service.get("profiles", []) == (["ha"] if name in HA else []), name
        if name not in HA:
            assert not set(service.get("depends_on", [])) & HA, name


def test_exporter_and_remediator_share_one_image(resolved):
    services = resolved["services"]
    for name in ("exporter", "remediator"):
        s = services[name]
        assert s["build"]["dockerfile"] == "docker/redis-autoheal/Dockerfile"
        assert s["image"] == "redis-autoheal:local"
    assert services["exporter"]["command"][0] == "exporter"
    assert services["remediator"]["command"][0] == "remediator"
    dockerfile = (REPO / "docker/redis-autoheal/Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["redis-autoheal"]' in dockerfile
    assert re.search(r"^RUN pip install /src", dockerfile, re.MULTILINE)


def _dockerfile_sources(dockerfile: Path) -> list[str]:
    sources = []
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        if line.startswith(("COPY ", "ADD ")):
            words = [w for w in line.split()[1:] if not w.startswith("--")]
            sources.extend(words[:-1])
    return sources


def _ignored(dockerignore: Path, source: str) -> bool:
    """Whether an allow-list .dockerignore ('*' then '!path' lines) leaves `source` out."""
    allowed = [
        line[1:].rstrip("/")
        for line in dockerignore.read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    ]
    return not any(source == a or source.startswith(a + "/") for a in allowed)


def test_builds_have_their_files(resolved):
    tracked = _tracked()
    for name, service in resolved["services"].items():
        build = service.get("build")
        if build is None:
            continue
        context = Path(build["context"])
        assert context == REPO, f"{name}: build context is the repository root"
        dockerfile = context / build["dockerfile"]
        _in_repo(dockerfile, tracked)
        dockerignore = dockerfile.with_name(dockerfile.name + ".dockerignore")
        _in_repo(dockerignore, tracked)
        assert dockerignore.read_text(encoding="utf-8").splitlines()[-1:] != ["!docker/"]
        for source in _dockerfile_sources(dockerfile):
            _in_repo(context / source, tracked)
            assert not _ignored(dockerignore, source), f"{dockerignore.name} leaves out {source}"
            assert not source.startswith("docker/secrets"), "secrets must never be built in"


def test_bind_mounts_are_in_the_repository(resolved):
    tracked = _tracked()
    named = set(resolved.get("volumes", {}))
    for name, service in resolved["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0] if isinstance(volume, str) else volume["source"]
            if source in named:
                continue
            assert source.startswith("/"), f"{name}: {volume}"
            path = Path(source)
            assert path.is_relative_to(REPO), f"{name}: mounts {path} from outside the repo"
            assert not path.is_relative_to(SECRETS), f"{name}: secrets go through `secrets:`"
            _in_repo(path, tracked)
            assert volume.endswith(":ro"), f"{name}: {volume} should be read-only"


def test_secrets_are_generated_not_committed(resolved, secrets_dir):
    for name, secret in resolved["secrets"].items():
        path = Path(secret["file"])
        assert path.parent == SECRETS, f"{name}: {path}"
        assert (secrets_dir / path.name).is_file(), f"gen-secrets.sh does not make {path.name}"
    tracked = _tracked()
    if tracked is not None:
        committed = {t for t in tracked if t.startswith("docker/secrets/")}
        assert committed == {"docker/secrets/.gitignore"}


def test_services_use_only_declared_secrets_and_volumes(resolved):
    secrets, volumes = set(resolved["secrets"]), set(resolved["volumes"])
    for name, service in resolved["services"].items():
        for s in service.get("secrets", []):
            assert (s if isinstance(s, str) else s["source"]) in secrets, name
        for v in service.get("volumes", []):
            source = v.split(":")[0] if isinstance(v, str) else v["source"]
            assert source.startswith("/") or source in volumes, f"{name}: {v}"


def test_ports_are_published_on_loopback_only(resolved):
    published = {}
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            text = port if isinstance(port, str) else f"{port['host_ip']}:{port['published']}"
            assert text.startswith("127.0.0.1:"), f"{name}: {port}"
            published[name] = text
    assert set(published) == {
        "exporter",
        "remediator",
        "prometheus",
        "alertmanager",
        "grafana",
        *(HA - {"etcd-1", "etcd-2", "etcd-3"}),
    }
    assert len(set(published.values())) == len(published), "two services on one port"


def test_images_are_pinned(resolved):
    for name, service in resolved["services"].items():
        image = service.get("image", "")
        if "build" in service:
            assert image.endswith(":local"), f"{name}: a built image is named :local"
            continue
        _, _, tag = image.rpartition(":")
        assert tag, f"{name}: {image} has no tag"
        assert tag != "latest", f"{name}: {image}"


def test_gen_secrets_is_idempotent_and_private(secrets_dir):
    before = {p.name: p.read_bytes() for p in secrets_dir.iterdir()}
    done = subprocess.run(
        ["sh", str(GEN_SECRETS), str(secrets_dir)], capture_output=True, text=True, check=True
    )
    assert done.stdout == ""
    assert {p.name: p.read_bytes() for p in secrets_dir.iterdir()} == before
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    for p in secrets_dir.iterdir():
        mode = stat.S_IMODE(p.stat().st_mode)
        public = p.suffix == ".pub" or p.name == "known_hosts"
        assert mode == (0o644 if public else 0o600), f"{p.name}: {mode:o}"
    for name in ("webhook_token", "admin_token", "operator_token", "redis_password"):
        assert re.fullmatch(r"[0-9a-f]{64}", (secrets_dir / name).read_text()), name
    assert len({(secrets_dir / n).read_text() for n in ("admin_token", "operator_token")}) == 2


def test_known_hosts_names_the_redis_host_with_its_key(secrets_dir):
    host_key = (secrets_dir / "ssh_host_ed25519_key.pub").read_text().split()[:2]
    assert (secrets_dir / "known_hosts").read_text().split() == ["redis-host", *host_key]
    derived = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(secrets_dir / "autobot_key")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[:2]
    assert derived == (secrets_dir / "autobot_key.pub").read_text().split()[:2]


def _volume_mount(resolved, service: str, volume: str) -> str:
    for v in resolved["services"][service]["volumes"]:
        if v.startswith(volume + ":"):
            return v.split(":")[1]
    raise AssertionError(f"{service} does not mount {volume}")


@pytest.mark.root
def test_secrets_init_hands_each_service_its_copy(resolved, secrets_dir, tmp_path):
    """Run docker/secrets-init.sh (as root, as in its container) and load docker/config.yml
    with the copies it made: the config, the key's mode and every token check out."""
    out = tmp_path / "out"
    env = {**os.environ, "SECRETS_IN": str(secrets_dir), "SECRETS_OUT": str(out)}
    subprocess.run(["sh", str(SECRETS_INIT)], check=True, env=env, capture_output=True)
    owners = {"autoheal": 10001, "alertmanager": 65534, "grafana": 472, "redis": 999}
    for name, uid in owners.items():
        assert (out / name).stat().st_uid == uid, name
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o700, name
        for f in (out / name).iterdir():
            assert f.stat().st_uid == uid, f
    assert (out / "redis/auth.conf").read_text() == (
        f"requirepass {(secrets_dir / 'redis_password').read_text()}\n"
    )
    # Each consumer mounts its volume where its config looks for the files.
    services = resolved["services"]
    autoheal_at = _volume_mount(resolved, "remediator", "autoheal-secrets")
    assert _volume_mount(resolved, "exporter", "autoheal-secrets") == autoheal_at
    assert _volume_mount(resolved, "redis", "redis-secrets") == "/run/redis-secrets"
    grafana_at = _volume_mount(resolved, "grafana", "grafana-secrets")
    password_file = services["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
    assert password_file == f"{grafana_at}/grafana_admin_password"
    # The autoheal copies must satisfy the project's own config loader.
    text = (REPO / "docker/config.yml").read_text(encoding="utf-8")
    assert autoheal_at in text
    config_path = tmp_path / "config.yml"
    config_path.write_text(text.replace(autoheal_at, str(out / "autoheal")))
    config = load_config(config_path)
    webhook, tokens = read_remediator_secrets(config)
    assert webhook == (secrets_dir / "webhook_token").read_text()
    assert set(tokens) == {"admin", "operator"}
    # What secrets-init copies is what compose mounts into it.
    declared = {
        s if isinstance(s, str) else s["source"] for s in services["secrets-init"]["secrets"]
    }
    copied = set(re.findall(r"\b(\w+)\b", SECRETS_INIT.read_text())) & set(resolved["secrets"])
    assert declared == copied


def test_autoheal_config_matches_the_stack(resolved, tmp_path):
    data = yaml.safe_load((REPO / "docker/config.yml").read_text(encoding="utf-8"))
    names = {t["name"] for t in data["targets"]}
    for t in data["targets"]:
        assert t["redis"]["host"] in resolved["services"], t["name"]
        if "ssh" in t:
            assert t["ssh"]["host"] in resolved["services"], t["name"]
            assert resolved["services"][t["ssh"]["host"]].get("hostname") == t["ssh"]["host"]
    assert names == {"redis", "redis-host"}
    assert data["exporter"]["listen"].endswith(":9121")
    assert data["remediator"]["listen"].endswith(":9122")


# --- Prometheus ---------------------------------------------------------------------------


def _mirror(resolved, service: str, root: Path) -> None:
    """Copy the service's bind mounts into `root` at their container paths."""
    for v in resolved["services"][service]["volumes"]:
        source, target = v.split(":")[:2]
        if not source.startswith("/"):
            continue
        dest = root / target.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        if Path(source).is_dir():
            shutil.copytree(source, dest)
        else:
            shutil.copy(source, dest)


@pytest.mark.parametrize("service", ["prometheus", "prometheus-ha"])
def test_prometheus_config_checks_with_its_mounts(resolved, tmp_path, service):
    promtool = require_binary("promtool")
    _mirror(resolved, service, tmp_path)
    config = tmp_path / "etc/prometheus/prometheus.yml"
    command = resolved["services"][service]["command"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in command
    assert any(tmp_path.glob("etc/prometheus/rules/*.yml")), "no rules mounted"
    done = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def _jobs(path: Path) -> dict[str, dict]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return {j["job_name"]: j for j in data["scrape_configs"]}


def test_prometheus_override_keeps_the_shipped_jobs():
    shipped_path = REPO / "alerts/prometheus.yml"
    ours_path = REPO / "docker/prometheus/prometheus.yml"
    shipped, ours = _jobs(shipped_path), _jobs(ours_path)
    assert set(ours) == set(shipped)
    for name, job in shipped.items():
        mine = ours[name]
        for key in ("scrape_interval", "scrape_timeout", "metrics_path", "params"):
            assert mine.get(key) == job.get(key), f"{name}.{key}"
        relabel = [dict(r) for r in job.get("relabel_configs", [])]
        for r in relabel:
            if r.get("replacement") == "127.0.0.1:9121":
                r["replacement"] = "exporter:9121"
        assert mine.get("relabel_configs", []) == relabel, name
    a = yaml.safe_load(shipped_path.read_text(encoding="utf-8"))
    b = yaml.safe_load(ours_path.read_text(encoding="utf-8"))
    assert a["global"] == b["global"]
    assert a["rule_files"] == b["rule_files"]


def test_prometheus_targets_are_the_configured_targets():
    data = yaml.safe_load((REPO / "docker/config.yml").read_text(encoding="utf-8"))
    every = {t["name"] for t in data["targets"]}
    with_ssh = {t["name"] for t in data["targets"] if "ssh" in t}
    targets = REPO / "docker/prometheus/targets"

    def names(file: str) -> set[str]:
        groups = yaml.safe_load((targets / file).read_text(encoding="utf-8"))
        return {t for g in groups for t in g["targets"]}

    assert names("all.yml") == every
    assert names("ssh.yml") == with_ssh
    jobs = _jobs(REPO / "docker/prometheus/prometheus.yml")
    assert jobs["redis-systemd"]["file_sd_configs"] == [{"files": ["targets/ssh.yml"]}]


# --- Alertmanager -------------------------------------------------------------------------


def test_alertmanager_config_checks(resolved):
    amtool = require_binary("amtool")
    path = REPO / "docker/alertmanager/alertmanager.yml"
    mounted = resolved["services"]["alertmanager"]["volumes"]
    assert f"{path}:/etc/alertmanager/alertmanager.yml:ro" in mounted
    done = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_alertmanager_override_keeps_the_shipped_routing(resolved):
    shipped_path = REPO / "alerts/alertmanager.yml"
    if not shipped_path.exists():
        pytest.fail("alerts/alertmanager.yml is missing")
    shipped = yaml.safe_load(shipped_path.read_text(encoding="utf-8"))
    ours = yaml.safe_load((REPO / "docker/alertmanager/alertmanager.yml").read_text())
    for key in ("route", "inhibit_rules", "time_intervals"):
        assert ours.get(key) == shipped.get(key), key
    assert {r["name"] for r in ours["receivers"]} == {r["name"] for r in shipped["receivers"]}
    (theirs_hook,) = next(r for r in shipped["receivers"] if r["name"] == "remediator")[
        "webhook_configs"
    ]
    (our_hook,) = next(r for r in ours["receivers"] if r["name"] == "remediator")["webhook_configs"]
    assert our_hook["url"] == "http://remediator:9122/webhook"
    token = our_hook["http_config"]["authorization"]["credentials_file"]
    at = _volume_mount(resolved, "alertmanager", "alertmanager-secrets")
    assert token == f"{at}/webhook_token"
    for d in (theirs_hook, our_hook):
        del d["url"]
        del d["http_config"]["authorization"]["credentials_file"]
    assert our_hook == theirs_hook
    # The demo pages nobody: no receiver but the remediator has an integration.
    for r in ours["receivers"]:
        assert r["name"] == "remediator" or set(r) == {"name"}, r["name"]


# --- Grafana ------------------------------------------------------------------------------


def test_grafana_datasource_override_differs_only_in_url():
    shipped = yaml.safe_load(
        (REPO / "dashboards/provisioning/datasources/prometheus.yml").read_text()
    )
    ours = yaml.safe_load((REPO / "docker/grafana/datasources/prometheus.yml").read_text())
    (a,), (b,) = shipped["datasources"], ours["datasources"]
    assert a.pop("url") == "http://127.0.0.1:9090"
    assert b.pop("url") == "http://prometheus:9090"
    assert a == b


def test_grafana_finds_the_dashboard_where_provisioning_looks(resolved):
    provider = yaml.safe_load(
        (REPO / "dashboards/provisioning/dashboards/redis-autoheal.yml").read_text()
    )
    (p,) = provider["providers"]
    volumes = resolved["services"]["grafana"]["volumes"]
    dashboard = REPO / "dashboards/redis-autoheal.json"
    targets = [v.split(":")[1] for v in volumes if v.startswith(f"{dashboard}:")]
    assert targets == [f"{p['options']['path']}/redis-autoheal.json"]
    env = resolved["services"]["grafana"]["environment"]
    assert env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == targets[0]
    assert f"{REPO}/dashboards/provisioning/dashboards:/etc/grafana/provisioning/dashboards:ro" in (
        volumes
    )


# --- the `ha` profile ---------------------------------------------------------------------


def _flag(command: list[str], name: str) -> str:
    (value,) = [c.split("=", 1)[1] for c in command if c.startswith(f"--{name}=")]
    return value


def _mounted(resolved, service: str, target: str) -> Path:
    """The repository file the service mounts at `target`."""
    (source,) = [
        v.split(":")[0] for v in resolved["services"][service]["volumes"] if f":{target}:" in v
    ]
    return Path(source)


def test_ha_etcd_members_form_one_cluster(resolved):
    services = resolved["services"]
    members = sorted(n for n in services if n.startswith("etcd-"))
    peers = {}
    for name in members:
        service = services[name]
        assert _flag(service["command"], "name") == name
        assert _flag(service["command"], "advertise-client-urls") == f"http://{name}:2379"
        peers[name] = _flag(service["command"], "initial-advertise-peer-urls")
        env = service["environment"]
        assert env["ETCD_LISTEN_CLIENT_URLS"] == "http://0.0.0.0:2379"
        assert env["ETCD_LISTEN_PEER_URLS"] == "http://0.0.0.0:2380"
        assert _volume_mount(resolved, name, f"{name}-data") == env["ETCD_DATA_DIR"]
    for name in members:
        cluster = services[name]["environment"]["ETCD_INITIAL_CLUSTER"]
        assert dict(p.split("=", 1) for p in cluster.split(",")) == peers
    assert peers == {n: f"http://{n}:2380" for n in ("etcd-1", "etcd-2", "etcd-3")}


def test_ha_remediators_are_replicas_of_the_stacks_remediator_on_that_cluster(resolved):
    services = resolved["services"]
    replicas = sorted(n for n in services if n.startswith("remediator-"))
    assert replicas == ["remediator-1", "remediator-2"]
    path = REPO / "docker/ha/config.yml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    single = yaml.safe_load((REPO / "docker/config.yml").read_text(encoding="utf-8"))
    assert data.pop("coordination") == {
        "backend": "etcd",
        "etcd": {"endpoints": [f"http://{n}:2379" for n in ("etcd-1", "etcd-2", "etcd-3")]},
    }
    assert data == single  # the same targets, secrets and listen addresses
    config = load_settings(path)
    assert config.coordination.backend == "etcd"
    stateful = ("/var/lib/redis-autoheal", "/var/log/redis-autoheal")
    volumes = {}
    for name in replicas:
        service = services[name]
        assert service["command"] == services["remediator"]["command"]
        assert service["hostname"] == name  # in the audit trail's `replica`
        assert service["image"] == services["remediator"]["image"]
        assert _mounted(resolved, name, "/etc/redis-autoheal/config.yml") == path
        assert _volume_mount(resolved, name, "autoheal-secrets") == _volume_mount(
            resolved, "remediator", "autoheal-secrets"
        )
        assert {"etcd-1", "etcd-2", "etcd-3"} <= set(service["depends_on"])
        volumes[name] = {v.split(":")[0] for v in service["volumes"] if v.split(":")[1] in stateful}
    # Each replica its own state and audit log (the cluster's copy is rebuilt from etcd).
    assert len(volumes["remediator-1"] | volumes["remediator-2"]) == 4


def test_ha_alertmanagers_gossip_and_send_to_every_replica(resolved):
    amtool = require_binary("amtool")
    services = resolved["services"]
    path = REPO / "docker/ha/alertmanager.yml"
    done = subprocess.run(
        [amtool, "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    names = ["alertmanager-1", "alertmanager-2"]
    for name, other in zip(names, reversed(names), strict=True):
        command = services[name]["command"]
        assert _mounted(resolved, name, "/etc/alertmanager/alertmanager.yml") == path
        assert _flag(command, "cluster.listen-address") == "0.0.0.0:9094"
        assert _flag(command, "cluster.peer") == f"{other}:9094"
        assert _volume_mount(resolved, name, "alertmanager-secrets") == _volume_mount(
            resolved, "alertmanager", "alertmanager-secrets"
        )
    ours = yaml.safe_load(path.read_text(encoding="utf-8"))
    single = yaml.safe_load((REPO / "docker/alertmanager/alertmanager.yml").read_text())
    hooks = next(r for r in ours["receivers"] if r["name"] == "remediator")["webhook_configs"]
    assert [h.pop("url") for h in hooks] == [
        "http://remediator-1:9122/webhook",
        "http://remediator-2:9122/webhook",
    ]
    (single_hook,) = next(r for r in single["receivers"] if r["name"] == "remediator")[
        "webhook_configs"
    ]
    del single_hook["url"]
    assert hooks == [single_hook, single_hook]
    for config in (ours, single):
        config["receivers"] = [r for r in config["receivers"] if r["name"] != "remediator"]
    assert ours == single  # the same routes, inhibitions and maintenance windows


def test_ha_prometheus_alerts_both_alertmanagers_and_scrapes_both_replicas(resolved):
    path = REPO / "docker/ha/prometheus.yml"
    assert _mounted(resolved, "prometheus-ha", "/etc/prometheus/prometheus.yml") == path
    ours = yaml.safe_load(path.read_text(encoding="utf-8"))
    single = yaml.safe_load((REPO / "docker/prometheus/prometheus.yml").read_text())
    (alerting,) = ours.pop("alerting")["alertmanagers"]
    assert alerting == {
        "static_configs": [{"targets": ["alertmanager-1:9093", "alertmanager-2:9093"]}]
    }
    jobs = {j["job_name"]: j for j in ours["scrape_configs"]}
    assert jobs["redis-autoheal-remediator"].pop("static_configs") == [
        {"targets": ["remediator-1:9122", "remediator-2:9122"]}
    ]
    del single["alerting"]
    for job in single["scrape_configs"]:
        if job["job_name"] == "redis-autoheal-remediator":
            del job["static_configs"]
    assert ours == single
    service = resolved["services"]["prometheus-ha"]
    assert {"alertmanager-1", "alertmanager-2", "remediator-1", "remediator-2"} <= set(
        service["depends_on"]
    )
