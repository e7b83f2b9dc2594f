"""Rotation over TLS: the simulators serve HTTPS with a throw-away CA."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotate.sim.host import SimulatorHost
from rotate.sim.tls import SimTLS, make_tls
from tests.plugins.scene import World, cli, converged, reconfigure


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SimTLS:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def sim_host(tls: SimTLS) -> Iterator[SimulatorHost]:
    """The scene's simulators, over HTTPS (overrides the plain-HTTP plugin fixture)."""
    with SimulatorHost(tls=tls.server) as host:
        yield host


def with_tls(world: World, extra: str) -> Path:
    """The world's config with a line added to every endpoint table."""
    return reconfigure(
        world, {f'url = "{url}"': f'url = "{url}"\n{extra}' for url in endpoint_urls(world)}
    )


def endpoint_urls(world: World) -> list[str]:
    """The vendor simulators' URLs (the directory stand-ins have their own CA and scheme)."""
    return [u for n, u in world.host.urls.items() if n in world.settings.endpoints]


def tls_warnings(record: dict[str, object]) -> list[str]:
    warnings = record["warnings"]
    assert isinstance(warnings, list)
    return [w for w in warnings if "TLS" in w]


def test_rotation_over_tls_with_the_custom_ca(world: World, tls: SimTLS) -> None:
    assert all(url.startswith("https://") for url in endpoint_urls(world))
    with_tls(world, f'ca_bundle = "{tls.ca_file}"')
    json_path = world.out.parent / "r.json"
    assert cli(world, "run", "--json", str(json_path)) == 0
    record = json.loads(json_path.read_text())
    assert record["summary"]["rotated"] == len(world.rows)
    assert tls_warnings(record) == []
    assert converged(world) == []


def test_without_the_ca_the_endpoints_fail_clearly_and_nothing_is_written(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    json_path = world.out.parent / "r.json"
    assert cli(world, "run", "--json", str(json_path)) == 1
    record = json.loads(json_path.read_text())
    assert {i["status"] for i in record["items"]} == {"not_attempted"}
    assert "certificate verify failed" in record["items"][0]["error"]
    for row in world.rows:
        assert world.version(row) is None
        assert world.pending(row) is None
    assert "certificate verify failed" in caplog.text


def test_insecure_works_and_is_warned_about_everywhere(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    with_tls(world, "insecure = true")
    json_path = world.out.parent / "r.json"
    assert cli(world, "run", "--json", str(json_path)) == 0
    record = json.loads(json_path.read_text())
    assert len(tls_warnings(record)) == len(endpoint_urls(world))
    assert "TLS certificate checks are OFF" in tls_warnings(record)[0]
    assert "TLS certificate checks are OFF" in caplog.text
    html = next(world.out.glob("run-*.html")).read_text()
    assert "TLS certificate checks are OFF" in html
