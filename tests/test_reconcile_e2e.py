"""Reconcile end to end: a real OpenBao, both simulators over loopback HTTP, a Runbook."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import hvac
import pytest

from rotate.backends import Secrets
from rotate.demo import sim_password
from rotate.devvault import DEV_MOUNT, DevVault
from rotate.inventory import group_accounts
from rotate.models import (
    Credential,
    ItemResult,
    PendingCandidate,
    Row,
    Secret,
    Stage,
    Status,
)
from rotate.reconcile import reconcile, reconcile_exit_code
from rotate.registry import vendor_of
from rotate.runbook import Options, Runbook
from rotate.settings import (
    PolicySettings,
    RunSettings,
    Settings,
    VaultSettings,
)
from rotate.sim.host import SimulatorHost
from rotate.sim.seed import seed_states
from rotate.stores.vault import VaultStore
from rotate.vendors.base import Target
from rotate.vendors.remotix import RemotixSettings
from rotate.vendors.sparkview import SparkViewSettings
from tests.plugins.scene import journal_candidates

GATEWAY = "gw-Secret-pass"
DRIFTED = "Drifted-by-hand-42"
CANDIDATE = "Candidate-staged-77"


@dataclass
class Scene:
    """Two simulated endpoints, their rows by name, and Vault under this test's prefix."""

    settings: Settings
    rows: dict[str, Row]
    host: SimulatorHost
    store: VaultStore
    token: str

    def held(self, name: str) -> str | None:
        row = self.rows[name]
        return sim_password(self.host.state(row.endpoint), row)

    def root(self) -> hvac.Client:
        return hvac.Client(url=self.settings.vault.addr, token=self.token)

    def current(self, name: str) -> str | None:
        """Vault's current password, read as root behind rotate's back."""
        try:
            answer = self.root().secrets.kv.v2.read_secret_version(
                path=self.rows[name].vault_path,
                mount_point=DEV_MOUNT,
                raise_on_deleted_version=True,
            )
        except hvac.exceptions.InvalidPath:
            return None
        return str(answer["data"]["data"]["password"])

    def version(self, name: str) -> int | None:
        try:
            meta = self.root().secrets.kv.v2.read_secret_metadata(
                path=self.rows[name].vault_path, mount_point=DEV_MOUNT
            )
        except hvac.exceptions.InvalidPath:
            return None
        return int(meta["data"]["current_version"]) or None

    def pending(self, name: str) -> str | None:
        found = journal_candidates(self.root(), self.settings.vault).get(self.rows[name].vault_path)
        return found.reveal() if found is not None else None

    async def stage(self, name: str, password: str, run_id: str) -> None:
        """A candidate as a run that then died would have left it."""
        row = self.rows[name]
        candidate = PendingCandidate(
            Credential(row.username, Secret(password), row.domain),
            run_id,
            datetime.now(UTC),
            self.version(name),
        )
        await self.store.stage(run_id, {row.vault_path: candidate})

    def writes(self) -> int:
        return sum(self.host.simulator(n).counters.writes for n in self.settings.endpoints)


@pytest.fixture
def scene(
    openbao: DevVault, vault_settings: VaultSettings, sim_host: SimulatorHost
) -> Iterator[Scene]:
    prefix = vault_settings.prefix
    endpoints = {
        "mac": RemotixSettings(name="mac", system="remotix", url="http://127.0.0.1:1"),
        "gw": SparkViewSettings(
            name="gw",
            system="sparkview",
            url="http://127.0.0.1:1",
            gateway_password_env="GW_PASSWORD",
        ),
    }

    def row(line: int, endpoint: str, kind: str, target: str, user: str) -> Row:
        path = f"{prefix}/{endpoint}/{kind}/{target}/RDP"
        return Row(line, endpoint, kind, target, user, "RDP", domain="CORP", vault_path=path)

    rows = {
        "computer": row(2, "mac", "computer", "comp-1", "admin"),
        "neighbour": row(3, "mac", "computer", "comp-2", "admin"),
        "connection": row(4, "mac", "connection", "4567-89AB", "administrator"),
        "server": row(5, "gw", "server", "srv-1", "svc-rdp"),
    }
    states = seed_states(rows.values(), endpoints, rng_seed=11)
    urls = {
        name: sim_host.add_endpoint(
            endpoints[name],
            state,
            gateway_password=GATEWAY if endpoints[name].system == "sparkview" else None,
        )
        for name, state in states.items()
    }
    settings = Settings(
        vault=vault_settings,
        run=RunSettings(concurrency=4, retries=1, backoff_s=0.01, timeout_s=5),
        policies={"default": PolicySettings(name="default", length=20)},
        endpoints=endpoints,
    ).with_endpoint_urls(urls)
    store = VaultStore(vault_settings)
    assert openbao.token is not None
    yield Scene(settings, rows, sim_host, store, openbao.token.reveal())
    store.close()


def build_targets(settings: Settings) -> dict[str, Target]:
    secrets = Secrets({"GW_PASSWORD": GATEWAY})
    return {
        name: vendor_of(endpoint).build(endpoint, settings.run, secrets)
        for name, endpoint in settings.endpoints.items()
    }


@asynccontextmanager
async def runbook(scene: Scene, mode: str) -> AsyncIterator[Runbook]:
    targets = build_targets(scene.settings)
    options = Options(run_id=f"{mode}-{uuid.uuid4().hex[:6]}", mode=mode)
    book = Runbook(scene.settings, scene.store, targets, options)
    try:
        yield book
    finally:
        await asyncio.gather(scene.store.aclose(), *(t.aclose() for t in targets.values()))


async def rotate_all(scene: Scene) -> None:
    async with runbook(scene, "run") as book:
        out = await book.run(group_accounts(list(scene.rows.values())))
    assert {i.status for i in out.items} == {Status.ROTATED}


async def reconcile_all(scene: Scene, repush: bool = False) -> dict[str, ItemResult]:
    for name in scene.settings.endpoints:
        scene.host.reset_counters(name)
    async with runbook(scene, "reconcile") as book:
        out = await reconcile(book, list(scene.rows.values()), repush)
    items = dict(zip(scene.rows, out.items, strict=True))
    assert {p.endpoint: p.ok for p in out.probes} == {"mac": True, "gw": True}
    assert reconcile_exit_code(out) == 0, [i.error for i in out.items]
    assert_no_secret(scene, out.items)
    return items


async def set_behind_vaults_back(scene: Scene, name: str, password: str) -> None:
    """Change a target's password through its vendor API, as an admin by hand would."""
    row = scene.rows[name]
    target = build_targets(scene.settings)[row.endpoint]
    try:
        await target.probe()
        await target.push(row, Credential(row.username, Secret(password), row.domain))
    finally:
        await target.aclose()
    assert scene.held(name) == password


def assert_no_secret(scene: Scene, items: list[ItemResult]) -> None:
    text = repr(items) + repr([i.as_record() for i in items])
    secrets = [scene.token, GATEWAY, DRIFTED, CANDIDATE]
    secrets.append(hashlib.md5(GATEWAY.encode(), usedforsecurity=False).hexdigest())
    for name in scene.rows:
        secrets += [p for p in (scene.held(name), scene.current(name)) if p]
        pending = scene.pending(name)
        if pending is not None:
            secrets.append(pending)
    for secret in secrets:
        assert secret not in text


async def test_drifted_computer_and_server_are_repushed(scene: Scene) -> None:
    await rotate_all(scene)
    for name in ("computer", "server"):
        await set_behind_vaults_back(scene, name, DRIFTED)
    items = await reconcile_all(scene)
    for name in ("computer", "server"):
        assert items[name].status is Status.REPAIRED, items[name]
        assert items[name].reason == "target drifted: re-pushed Vault's current password"
        assert items[name].verified is True
        assert items[name].vault_version == 1
        assert scene.held(name) == scene.current(name) != DRIFTED
        assert scene.version(name) == 1
    assert items["neighbour"].status is Status.IN_SYNC
    assert items["connection"].status is Status.SKIPPED
    assert scene.writes() == 2  # the two re-pushes, nothing else


async def test_pending_candidate_held_by_target_is_promoted(scene: Scene) -> None:
    await rotate_all(scene)
    # A run staged and pushed a candidate, then died before promoting it.
    for name in ("computer", "server"):
        await scene.stage(name, CANDIDATE, "crashed-run")
        await set_behind_vaults_back(scene, name, CANDIDATE)
    items = await reconcile_all(scene)
    for name in ("computer", "server"):
        item = items[name]
        assert item.status is Status.REPAIRED, item
        assert item.reason == "target holds the pending candidate: promoted it (Vault repaired)"
        assert item.stage is Stage.PROMOTED
        assert item.vault_version == 2
        assert scene.current(name) == scene.held(name) == CANDIDATE
        assert scene.pending(name) is None
    assert scene.writes() == 0


async def test_stale_pending_is_discarded(scene: Scene) -> None:
    await rotate_all(scene)
    before = scene.held("computer")
    # A run staged a candidate and died before the target saw it.
    await scene.stage("computer", CANDIDATE, "dead")
    items = await reconcile_all(scene)
    item = items["computer"]
    assert item.status is Status.REPAIRED
    assert item.reason == "target holds the current password: stale candidate discarded"
    assert item.vault_version == 1
    assert scene.pending("computer") is None
    assert scene.current("computer") == scene.held("computer") == before
    assert scene.writes() == 0


async def test_never_stored_targets_are_adopted(scene: Scene) -> None:
    seeded = {name: scene.held(name) for name in scene.rows}
    items = await reconcile_all(scene)
    for name in ("computer", "neighbour", "server"):
        item = items[name]
        assert item.status is Status.REPAIRED, item
        assert item.reason == "adopted the target's password into Vault"
        assert item.vault_version == 1
        current = await scene.store.read_current(scene.rows[name].vault_path)
        assert current is not None
        assert current.password.reveal() == seeded[name]
        assert current.username == scene.rows[name].username
        assert current.domain == "CORP"
    # A write-only connection cannot be read, so there is nothing to adopt.
    assert items["connection"].status is Status.SKIPPED
    assert scene.version("connection") is None
    assert scene.writes() == 0
    assert {name: scene.held(name) for name in scene.rows} == seeded


async def test_write_only_connection_skipped_then_repushed(scene: Scene) -> None:
    await rotate_all(scene)
    await set_behind_vaults_back(scene, "connection", DRIFTED)
    items = await reconcile_all(scene)
    assert items["connection"].status is Status.SKIPPED
    assert items["connection"].reason.startswith("write-only target: cannot compare")
    assert scene.held("connection") == DRIFTED
    assert scene.writes() == 0

    items = await reconcile_all(scene, repush=True)
    item = items["connection"]
    assert item.status is Status.REPAIRED
    assert item.reason == "re-pushed Vault's current password (write-only target)"
    assert item.verified is False
    assert scene.held("connection") == scene.current("connection") != DRIFTED
    assert scene.version("connection") == 1
    assert {items[n].status for n in ("computer", "neighbour", "server")} == {Status.IN_SYNC}
    assert scene.writes() == 1
