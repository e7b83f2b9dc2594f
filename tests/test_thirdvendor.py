"""A third vendor from outside rotate/ (tests/thirdvendor), found through the `rotate.vendors`
entry point of an installed distribution: its config section, its inventory kind, a run
against a real OpenBao and its simulator, `plan` and `report` after it, and `discover`.
Nothing under rotate/ names it."""

from __future__ import annotations

import csv
import importlib
import io
import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotate import registry
from rotate.cli import main
from rotate.demo import sim_password
from rotate.devvault import DevVault
from rotate.errors import ConfigError, InventoryError
from rotate.inventory import load_inventory
from rotate.settings import load_settings
from rotate.sim.host import SimulatorHost
from rotate.sim.seed import seed_states
from rotate.stores.vault import VaultStore
from tests.plugins.scene import sync

API_KEY = "acme-Api-key-4711"


@pytest.fixture
def acme(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The `acme` vendor registered as an installed distribution would register it: a
    `*.dist-info` with an `entry_points.txt`, on sys.path."""
    site = tmp_path / "site"
    dist = site / "rotate_acme-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rotate-acme\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[rotate.vendors]\nacme = tests.thirdvendor:VENDOR\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    registry.forget()
    yield
    registry.forget()


def _config(path: Path, prefix: str, url: str) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""
            [vault]
            prefix = "{prefix}"

            [run]
            authority = "none"

            [endpoints.box]
            system = "acme"
            url = "{url}"
            api_key_env = "ACME_KEY"
            """
        )
    )
    return path


def test_the_entry_point_adds_the_vendor_and_its_kind(acme: None, tmp_path: Path) -> None:
    assert registry.vendor_names() == ["remotix", "sparkview", "acme"]
    assert registry.system_of_kind("appliance") == "acme"
    settings = load_settings(_config(tmp_path / "c.toml", "p", "http://127.0.0.1:1"), env={})
    assert type(settings.endpoints["box"]).__name__ == "AcmeSettings"
    bad = tmp_path / "bad.toml"
    bad.write_text('[endpoints.box]\nsystem = "acme"\nurl = "http://127.0.0.1:1"\ncolour = 1\n')
    with pytest.raises(ConfigError) as info:
        load_settings(bad, env={})
    assert "endpoints.box: unknown key 'colour'" in str(info.value)
    assert "endpoints.box: an acme endpoint needs api_key_env" in str(info.value)
    inventory = tmp_path / "i.csv"
    inventory.write_text("endpoint,kind,target,username,port\nbox,appliance,fw-01,admin,22\n")
    with pytest.raises(InventoryError, match="a port only applies to a computer connection"):
        load_inventory(inventory, settings)


def test_without_the_entry_point_the_system_is_unknown(tmp_path: Path) -> None:
    registry.forget()
    with pytest.raises(ConfigError, match="expected one of remotix, sparkview, got str 'acme'"):
        load_settings(_config(tmp_path / "c.toml", "p", "http://127.0.0.1:1"), env={})


def test_rotate_run_with_the_third_vendor_end_to_end(
    acme: None,
    openbao: DevVault,
    sim_host: SimulatorHost,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("VAULT_ADDR", openbao.addr)
    monkeypatch.setenv("VAULT_TOKEN", openbao.token.reveal())
    monkeypatch.setenv("ACME_KEY", API_KEY)
    prefix = f"rotate-test-{uuid.uuid4().hex[:8]}"
    config = _config(tmp_path / "rotate.toml", prefix, "http://127.0.0.1:1")
    inventory = tmp_path / "inventory.csv"
    inventory.write_text("endpoint,kind,target,username\nbox,appliance,fw-01,admin\n")
    inventory.write_text(inventory.read_text() + "box,appliance,fw-02,operator\n")
    settings = load_settings(config)
    rows = load_inventory(inventory, settings)
    assert [r.vault_path for r in rows] == [
        f"{prefix}/box/appliance/fw-01",
        f"{prefix}/box/appliance/fw-02",
    ]
    # The simulator, seeded and served through the vendor's own hook.
    state = seed_states(rows, settings.endpoints)["box"]
    initial = {r.target: sim_password(state, r) for r in rows}
    endpoint = settings.endpoints["box"]
    expected = registry.vendor_of(endpoint).simulator.secrets(endpoint, {"ACME_KEY": API_KEY})
    url = sim_host.add_endpoint(endpoint, state, **expected)
    config = _config(config, prefix, url)
    out = tmp_path / "reports"
    args = ["--config", str(config), "--out-dir", str(out)]

    # rotate: every appliance takes a new password, read back, and Vault keeps it
    record_path = tmp_path / "run.json"
    assert main(["run", str(inventory), *args, "--json", str(record_path)]) == 0
    record = json.loads(record_path.read_text())
    assert record["summary"]["rotated"] == 2
    assert {(i["kind"], i["status"], i["verified"]) for i in record["items"]} == {
        ("appliance", "rotated", True)
    }
    store = VaultStore(settings.vault)
    try:
        for row in rows:
            current = sync(store).read_current(row.vault_path)
            assert current.password.reveal() == sim_password(state, row) != initial[row.target]
            assert current.username == row.username
    finally:
        store.close()
    assert sim_host.simulator("box").counters.writes == 2
    # converges: nothing left to do, and the compliance report says so
    plan_path = tmp_path / "plan.json"
    assert main(["plan", str(inventory), *args, "--json", str(plan_path)]) == 0
    assert {i["status"] for i in json.loads(plan_path.read_text())["items"]} == {"not_due"}
    report_path = tmp_path / "report.json"
    assert main(["report", str(inventory), *args, "--json", str(report_path)]) == 0
    report = json.loads(report_path.read_text())
    assert {i["status"] for i in report["items"]} == {"compliant"}
    assert any(out.glob("report-*.html"))
    assert sim_host.simulator("box").counters.writes == 2
    # discover: the vendor's own contribution, no password in it
    capsys.readouterr()
    assert main(["discover", "--config", str(config)]) == 0
    found = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["kind"], r["target"], r["username"]) for r in found] == [
        ("appliance", "fw-01", "admin"),
        ("appliance", "fw-02", "operator"),
    ]
