"""`target=redis://HOST:PORT`: probed only when exporter.allowed_targets admits it, with the
credentials of the first matching pattern; everything else a 400 naming why."""

from __future__ import annotations

import pytest
import yaml

from exporter import selfmetrics
from exporter.app import create_app
from redis_autoheal.config import load_config
from redis_autoheal.errors import ConfigError
from tests.exporter.redis_servers import redis_target
from tests.exporter.samples import parse_samples, value
from tests.tls import make_tls_files


@pytest.fixture
def exporter_with(aiohttp_client, tmp_path, redis_server):
    """exporter_with(allowed_targets) -> a client of an exporter with that allowlist."""

    async def make(allowed: dict, **exporter: object):
        data = {
            "targets": [redis_target("configured", redis_server)],
            "exporter": {"allowed_targets": allowed, **exporter},
        }
        path = tmp_path / "config.yml"
        path.write_text(yaml.safe_dump(data), encoding="utf-8")
        return await aiohttp_client(create_app(load_config(path)))

    return make


def secret(tmp_path, name: str, text: str, mode: int = 0o600) -> str:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return str(path)


async def probe(client, target: str, module: str = "all"):
    response = await client.get("/probe", params={"target": target, "module": module})
    return response.status, await response.text()


def connections(server) -> int:
    with server.client() as c:
        return c.info("stats")["total_connections_received"]


async def test_an_address_inside_the_networks_is_probed_without_a_systemd_layer(
    exporter_with, redis_server
):
    client = await exporter_with({"networks": ["127.0.0.0/8"]})
    status, text = await probe(client, f"redis://127.0.0.1:{redis_server.port}")
    assert status == 200
    samples = parse_samples(text)
    assert value(samples, "redis_up") == 1
    assert value(samples, "redis_db_keys", db="db0") == 0
    layers = {dict(labels)["layer"] for name, labels in samples if name == "redis_probe_success"}
    assert layers == {"connectivity", "performance"}


async def test_redis_exporters_scrape_path_answers_the_same(exporter_with, redis_server):
    client = await exporter_with({"networks": ["127.0.0.0/8"]})
    target = f"redis://127.0.0.1:{redis_server.port}"
    response = await client.get("/scrape", params={"target": target})
    assert response.status == 200
    assert value(parse_samples(await response.text()), "redis_up") == 1


async def test_an_address_outside_the_networks_is_refused_and_never_connected(
    exporter_with, redis_server
):
    client = await exporter_with({"networks": ["10.0.0.0/8", "::1/128"]})
    before_metric = selfmetrics.BAD_REQUESTS.labels("not_allowed")._value.get()
    before = connections(redis_server)
    status, text = await probe(client, f"redis://127.0.0.1:{redis_server.port}")
    assert status == 400
    assert text == (
        f"target 127.0.0.1:{redis_server.port} refused: 127.0.0.1 is outside "
        "exporter.allowed_targets.networks\n"
    )
    assert connections(redis_server) == before + 1  # this check's own connection only
    assert selfmetrics.BAD_REQUESTS.labels("not_allowed")._value.get() == before_metric + 1


async def test_without_an_allowlist_only_configured_names_are_probed(exporter_with, redis_server):
    client = await exporter_with({})
    status, text = await probe(client, f"redis://127.0.0.1:{redis_server.port}")
    assert status == 400
    assert "exporter.allowed_targets is empty" in text
    assert (await probe(client, "configured"))[0] == 200


async def test_a_host_name_matching_a_pattern_and_resolving_inside_is_probed(
    exporter_with, redis_server
):
    client = await exporter_with({"networks": ["127.0.0.0/8"], "hosts": ["local*"]})
    status, text = await probe(client, f"redis://LOCALHOST:{redis_server.port}")
    assert status == 200
    assert value(parse_samples(text), "redis_up") == 1


async def test_a_host_name_resolving_outside_the_networks_is_refused(exporter_with, redis_server):
    client = await exporter_with({"networks": ["10.0.0.0/8"], "hosts": ["localhost"]})
    before = connections(redis_server)
    status, text = await probe(client, f"redis://localhost:{redis_server.port}")
    assert (status, text) == (
        400,
        (
            f"target localhost:{redis_server.port} refused: localhost resolves to 127.0.0.1, "
            "outside exporter.allowed_targets.networks\n"
        ),
    )
    assert connections(redis_server) == before + 1


async def test_a_host_name_matching_no_pattern_is_refused_before_resolving(
    exporter_with, redis_server
):
    client = await exporter_with({"networks": ["127.0.0.0/8"], "hosts": ["*.redis.internal"]})
    status, text = await probe(client, f"redis://localhost:{redis_server.port}")
    assert status == 400
    assert "matches no pattern of exporter.allowed_targets.hosts" in text


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("redis://user:pw@127.0.0.1:6379", "carries credentials"),
        ("redis://:pw@127.0.0.1:6379", "carries credentials"),
        ("http://127.0.0.1:6379", "use redis:// or rediss://"),
        ("redis://127.0.0.1:6379/0?x=1", "only redis[s]://HOST:PORT"),
        ("redis://127.0.0.1:99999", "not a valid URL"),
        ("redis://:6379", "has no host"),
    ],
)
async def test_malformed_urls_are_refused(exporter_with, target, why):
    client = await exporter_with({"networks": ["0.0.0.0/0"]})
    status, text = await probe(client, target)
    assert status == 400
    assert why in text
    assert "pw" not in text  # a password given in the URL is never repeated


async def test_module_systemd_needs_a_configured_target(exporter_with, redis_server):
    client = await exporter_with({"networks": ["127.0.0.0/8"]})
    status, text = await probe(client, f"redis://127.0.0.1:{redis_server.port}", "systemd")
    assert status == 400
    assert "module=systemd needs a configured target" in text


async def test_credentials_per_pattern_from_files(exporter_with, redis_server_factory, tmp_path):
    locked = redis_server_factory(password="s3cret")
    other = redis_server_factory(password="different")
    client = await exporter_with(
        {
            "networks": ["127.0.0.0/8"],
            "credentials": [
                {
                    "pattern": f"127.0.0.1:{locked.port}",
                    "password_file": secret(tmp_path, "a", "s3cret"),
                },
                {"pattern": "127.0.0.*:*", "password_file": secret(tmp_path, "b", "wrong")},
            ],
        }
    )
    status, text = await probe(client, f"redis://127.0.0.1:{locked.port}")
    assert value(parse_samples(text), "redis_up") == 1
    # The second pattern matches the other server, with a wrong password: a failed probe.
    status, text = await probe(client, f"redis://127.0.0.1:{other.port}")
    assert status == 200
    samples = parse_samples(text)
    assert value(samples, "redis_up") == 0
    assert value(samples, "redis_probe_error", layer="connectivity", reason="auth") == 1


async def test_rediss_with_the_patterns_tls_files(exporter_with, redis_server_factory, tmp_path):
    server = redis_server_factory(tls=True)
    files = make_tls_files(tmp_path)
    client = await exporter_with(
        {
            "networks": ["127.0.0.1/32"],
            "credentials": [
                {
                    "pattern": "127.0.0.1:*",
                    "tls_ca_file": str(files["ca"]),
                    "tls_cert_file": str(files["cert"]),
                    "tls_key_file": str(files["key"]),
                }
            ],
        }
    )
    status, text = await probe(client, f"rediss://127.0.0.1:{server.port}")
    assert status == 200
    assert value(parse_samples(text), "redis_up") == 1
    # The same server as plain redis:// is not TLS: a failed probe, not a proxy to elsewhere.
    status, text = await probe(client, f"redis://127.0.0.1:{server.port}")
    assert value(parse_samples(text), "redis_up") == 0


def test_a_password_file_others_may_read_is_refused(tmp_path):
    data = {
        "targets": [{"name": "r"}],
        "exporter": {
            "allowed_targets": {
                "networks": ["10.0.0.0/8"],
                "credentials": [
                    {"pattern": "*", "password_file": secret(tmp_path, "pw", "x", 0o644)}
                ],
            }
        },
    }
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"allowed_targets\.credentials\[0\]\.password_file.*644"):
        load_config(path)


@pytest.mark.parametrize(
    ("allowed", "problem"),
    [
        ({"hosts": ["*.internal"]}, "hosts: needs networks too"),
        ({"networks": ["10.0.0.0/8", "nope"]}, "networks: must be an address or network"),
        ({"networks": ["10.0.0.0/8"], "hosts": ["a b"]}, "hosts: must be a host name pattern"),
        ({"networks": ["10.0.0.0/8"], "proxy": True}, "proxy"),
    ],
)
def test_bad_allowlists_are_refused_with_the_key(tmp_path, allowed, problem):
    path = tmp_path / "config.yml"
    path.write_text(
        yaml.safe_dump({"targets": [{"name": "r"}], "exporter": {"allowed_targets": allowed}})
    )
    with pytest.raises(ConfigError, match=problem):
        load_config(path)
