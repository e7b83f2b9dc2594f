"""One test per fault of the reliability issue, each against a real OpenBao and the vendor
simulators over loopback, driving the CLI in-process.

Each asserts the exit code, a message, and the invariants of DESIGN.md: no lockout (whatever
a target holds is Vault's current password or the pending candidate), a definite rejection
discards the candidate and leaves the current valid, an unknown outcome keeps the candidate
pending and one more clean run converges on it (never on a fresh password). Each also proves
that no secret reached stdout, stderr, the log, the reports or the `--json` record.

Elsewhere: Vault unreachable at start and a wrong Spark View gateway password are covered in
test_e2e.py (with the same no-secret check).
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import hvac
import pytest

from rotate.devvault import DEV_MOUNT, DevVault
from rotate.inventory import load_inventory
from rotate.sim.faults import Faults
from rotate.vendors.remotix.simulator import RemotixSimulator
from tests.plugins.scene import (
    World,
    WorldFactory,
    adopt,
    assert_no_secret_in_outputs,
    cli,
    converged,
    lockouts,
    reconfigure,
    record_of,
    snapshot,
    wait_until,
)

pytestmark = pytest.mark.integration

Record = dict[str, Any]
Item = dict[str, Any]


def fast(retries: int = 2) -> dict[str, str]:
    """Config replacements: few retries, short backoff (a Retry-After still wins)."""
    return {"retries = 3": f"retries = {retries}\nbackoff_s = 0.02"}


def run(world: World, *args: str) -> tuple[int, Record]:
    """`rotate run` with a `--json` record kept beside the reports (the no-secret check reads
    every file there); returns the exit code and the record."""
    n = len(list(world.out.glob("record-*.json"))) if world.out.exists() else 0
    path = world.out / f"record-{n}.json"
    code = cli(world, "run", "--json", str(path), *args)
    return code, record_of(path)


def label_of(item: Item) -> str:
    suffix = f"{item['protocol']}_{item['port']}" if item["port"] is not None else item["protocol"]
    return f"{item['endpoint']}/{item['kind']}/{item['target']}/{suffix}"


def items_by_label(record: Record) -> dict[str, Item]:
    return {label_of(i): i for i in record["items"]}


def split(record: Record, endpoint: str) -> tuple[list[Item], list[Item]]:
    """The items of `endpoint`, and all the others."""
    mine = [i for i in record["items"] if i["endpoint"] == endpoint]
    assert mine
    return mine, [i for i in record["items"] if i["endpoint"] != endpoint]


def statuses(items: list[Item]) -> set[str]:
    return {i["status"] for i in items}


def copy_only(world: World, item: Item) -> bool:
    """Whether the item's account has no authority (its copies are the only place)."""
    return world.row(label_of(item)).authority == "none"


def unsure(world: World, item: Item) -> str:
    """The status of a usage that may or may not have taken its new password: `in_doubt` for
    a copy-only account (its candidate stays pending), `stale` for an account changed at its
    authority (promoted; the next run re-pushes it to the usage)."""
    return "in_doubt" if copy_only(world, item) else "stale"


def pendings(world: World, endpoint: str) -> dict[str, str]:
    """The pending candidate of every copy-only row of `endpoint` (each must have one); the
    rows of accounts changed at their authority were promoted instead (and are stale)."""
    rows = [r for r in world.rows_of(endpoint) if r.authority == "none"]
    found = {r.label: world.pending(r) for r in rows}
    assert None not in found.values(), found.keys()
    return {k: v for k, v in found.items() if v is not None}


def assert_stale_on_the_new_password(world: World, endpoint: str) -> None:
    """Rows of `endpoint` whose accounts were changed at their authority: recorded stale,
    and their account's new password is Vault's current and logs in at the authority."""
    for row in world.rows_of(endpoint):
        if row.authority == "none":
            continue
        account = world.account(row.account)
        assert world.pending(row) is None
        assert world.current(row) != world.initial[row.label]
        assert world.authority_password(account) == world.current(row)


def assert_converges_on(world: World, candidates: dict[str, str]) -> Record:
    """One more clean run (faults off) exits 0, every target holds Vault's current password,
    nothing is pending, and each row that had a candidate now has exactly that one as its
    current password: it was re-sent and promoted, never replaced by a fresh password. A
    promotion that reached Vault though its answer was lost is found already done: that
    row's journal record is settled and the row is `skipped` (nothing left to do)."""
    for name in world.states:
        world.host.set_faults(name, Faults())
    landed = {
        label for label, candidate in candidates.items()
        if world.current(world.row(label)) == candidate
    }  # fmt: skip
    made = len(world.generated)
    code, record = run(world)
    assert code == 0, [i["error"] for i in record["items"] if i["error"]]
    assert len(world.generated) == made, "the clean run made a fresh password"
    assert converged(world) == []
    items = items_by_label(record)
    for label, candidate in candidates.items():
        assert items[label]["status"] == ("skipped" if label in landed else "rotated")
        assert world.current(world.row(label)) == candidate
    return record


# --- Vault sealed or lost -----------------------------------------------------------------


@pytest.fixture(scope="module")
def spare_server() -> Iterator[DevVault]:
    """An OpenBao of its own for the tests that seal it or cut it off (never the session's)."""
    with DevVault() as server:
        yield server


def unseal(vault: DevVault) -> None:
    """Unseal with the dev server's key and wait until the KV mount serves again."""
    client = hvac.Client(url=vault.addr, token=vault.token.reveal())
    try:
        client.sys.submit_unseal_key(vault.unseal_key.reveal())

        def kv_ready() -> bool:
            try:
                client.secrets.kv.v2.read_configuration(mount_point=DEV_MOUNT)
            except (hvac.exceptions.VaultError, OSError):
                return False
            return True

        assert wait_until(kv_ready, 10), "OpenBao did not come back after unsealing"
    finally:
        client.adapter.close()


@pytest.fixture
def spare_vault(spare_server: DevVault) -> Iterator[DevVault]:
    """The spare server, unsealed again after the test whatever happened."""
    yield spare_server
    client = hvac.Client(url=spare_server.addr, token=spare_server.token.reveal())
    try:
        if client.sys.is_sealed():
            unseal(spare_server)
    finally:
        client.adapter.close()


class TcpProxy:
    """A loopback TCP relay to `port`. `cut()` makes the far side unreachable (open
    connections reset, new ones refused) until `restore()` listens on the same port again."""

    def __init__(self, port: int) -> None:
        self._upstream = port
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self.port = 0
        self.restore()

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stop = threading.Event()
        threading.Thread(target=self._accept, args=(listener, self._stop), daemon=True).start()

    def _accept(self, listener: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._upstream))
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=_relay, args=(src, dst), daemon=True).start()

    def cut(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()


def _relay(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def forget_stale_lease(world: World) -> None:
    """Delete the run lease the cut-off run could not give back. A next run in a new process
    takes such a lease over at once (its holder's process is gone); in-process the holder's
    pid lives on, so the test clears it as that takeover would."""
    root = getattr(world.settings.vault, "lease_root", None)
    if root is None:
        return
    kv = world.client.secrets.kv.v2
    try:
        keys = kv.list_secrets(root, mount_point=DEV_MOUNT)["data"]["keys"]
    except hvac.exceptions.InvalidPath:
        return
    for key in keys:
        kv.delete_metadata_and_all_versions(f"{root}/{key}", mount_point=DEV_MOUNT)


def test_vault_sealed_at_start_exit_3_nothing_touched(
    make_world: WorldFactory,
    spare_vault: DevVault,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = make_world(spare_vault)
    world.extra_secrets.append(spare_vault.unseal_key.reveal())
    world.client.sys.seal()
    json_path = world.out.parent / "record.json"
    assert cli(world, "run", "--json", str(json_path)) == 3
    captured = capsys.readouterr()
    assert f"Vault at {spare_vault.addr} is sealed" in captured.err
    assert sum(world.host.simulator(n).counters.requests for n in world.states) == 0
    # The refusal is recorded (its reason in `aborted`, no item), no report is written.
    record = record_of(json_path)
    assert record["aborted"].startswith("refused before any change: ")
    assert "sealed" in record["aborted"]
    assert record["items"] == []
    assert not world.out.exists()
    unseal(spare_vault)
    for row in world.rows:
        assert world.version(row) is None
        assert world.pending(row) is None
        assert world.held(row) == world.initial[row.label]
    assert_no_secret_in_outputs(world, captured, caplog)


@pytest.mark.parametrize("loss", ["sealed", "unreachable"])
def test_vault_lost_mid_run_no_lockout_then_converges(
    make_world: WorldFactory,
    spare_vault: DevVault,
    loss: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxy = TcpProxy(spare_vault.port)
    try:
        world = make_world(spare_vault, addr=proxy.addr)
        world.extra_secrets.append(spare_vault.unseal_key.reveal())
        adopt(world)
        for name in world.states:
            world.host.set_faults(name, Faults(latency_ms=50))

        def writes() -> int:
            return sum(world.host.simulator(n).counters.writes for n in world.states)

        lost = threading.Event()

        def promoted() -> bool:
            return any((world.version(a.usages[0]) or 0) > 1 for a in world.accounts)

        def lose_vault() -> None:
            # Mid-run: some vendor writes done and at least one account promoted already.
            if wait_until(lambda: writes() >= 6 and promoted(), 20):
                if loss == "sealed":
                    world.client.sys.seal()
                else:
                    proxy.cut()
                lost.set()

        saboteur = threading.Thread(target=lose_vault)
        saboteur.start()
        try:
            code, record = run(world, "--force", "--concurrency", "4")
        finally:
            saboteur.join()
        assert lost.is_set()
        assert code == 1
        counts = Counter(i["status"] for i in record["items"])
        assert set(counts) <= {"rotated", "failed", "in_doubt"}, counts
        assert counts["rotated"] >= 1, counts
        assert counts["failed"] + counts["in_doubt"] >= 1, counts
        bad = [i for i in record["items"] if i["status"] != "rotated"]
        assert all("Vault unreachable" in i["error"] for i in bad), [i["error"] for i in bad]
        if loss == "sealed":
            assert all("sealed" in i["error"] for i in bad), bad

        # Vault back: whatever each target holds is Vault's current or its pending candidate.
        if loss == "sealed":
            unseal(spare_vault)
        else:
            proxy.restore()
        assert lockouts(world) == []
        candidates = {}
        for item in bad:
            row = world.row(label_of(item))
            if item["status"] == "failed" or "promotion failed" not in item["error"]:
                # Vault refused the stage, or could not give the current password to check at
                # the authority first: the target never saw a candidate.
                said = ("not staged, target untouched", "nothing changed", "stays pending")
                assert any(words in item["error"] for words in said), item["error"]
                assert world.held(row) == world.initial[row.label] == world.current(row)
            else:
                # The target took the candidate; Vault could not promote it: it stays pending.
                pending = world.pending(row)
                assert pending is not None
                assert world.held(row) == pending
                candidates[row.label] = pending
        forget_stale_lease(world)
        assert_converges_on(world, candidates)
        assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)
    finally:
        proxy.cut()


# --- Vault permission denied ----------------------------------------------------------------

RW = ["create", "read", "update", "patch", "delete", "list"]
RO = ["read", "list"]


def restricted_token(world: World, rules: dict[str, list[str]]) -> str:
    """A token (with the default policy, to look itself up) whose policy grants `rules`:
    path prefix under the mount -> capabilities, on both the data and the metadata paths."""
    name = f"rotate-test-{uuid.uuid4().hex[:8]}"
    hcl = "\n".join(
        f'path "{DEV_MOUNT}/{kind}/{path}/*" {{ capabilities = {json.dumps(caps)} }}'
        for path, caps in rules.items()
        for kind in ("data", "metadata")
    )
    world.client.sys.create_or_update_policy(name, hcl)
    token: str = world.client.auth.token.create(policies=[name], ttl="10m")["auth"]["client_token"]
    world.extra_secrets.append(token)
    return token


@pytest.mark.parametrize("case", ["secrets-read-only", "pending-unreadable", "promotion-denied"])
def test_permission_denied_names_the_path_no_lockout(
    world: World,
    case: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    adopt(world)
    vault = world.settings.vault
    pending = vault.pending_root
    rules = {
        "secrets-read-only": {vault.prefix: RO},
        "pending-unreadable": {vault.prefix: RW, pending: ["deny"]},
        "promotion-denied": {vault.prefix: RO, pending: RW},
    }[case]
    # The run lease is not what this test is about: the token may keep one.
    lease_root = getattr(vault, "lease_root", None)
    if lease_root is not None:
        rules[lease_root] = RW
    monkeypatch.setenv("VAULT_TOKEN", restricted_token(world, rules))
    # Without the preflight (which refuses these policies up front: test_least_privilege.py),
    # as when a policy narrows during a run: each denied call fails its own item.
    reconfigure(world, {'auth = "token"': 'auth = "token"\npreflight = false'})
    before = snapshot(world, world.client)

    if case == "pending-unreadable":
        # Without the journal a run cannot tell which rows have a candidate to resume, so
        # it refuses before any change rather than risk replacing one.
        assert cli(world, "run", "--force") == 3
        err = capsys.readouterr().err
        assert "could not read the journal of unfinished rotations" in err
        assert f"permission denied on secret/{pending}" in err
        assert sum(world.host.simulator(n).counters.writes for n in world.states) == 0
        assert snapshot(world, world.client) == before
        assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)
        return
    code, record = run(world, "--force")
    assert code == 1
    for item in record["items"]:
        row = world.row(label_of(item))
        if case == "promotion-denied":
            assert item["status"] == "in_doubt"
            denied = f"permission denied on secret/{row.vault_path}"
            assert f"promotion failed ({denied})" in item["error"]
        else:
            assert item["status"] == "failed"
            assert "not staged, target untouched" in item["error"]
            assert f"permission denied on secret/{pending}/" in item["error"]
    assert lockouts(world) == []
    writes = sum(world.host.simulator(n).counters.writes for n in world.states)
    if case == "promotion-denied":
        # Staged, pushed, then stuck: every target holds its pending candidate.
        candidates = {r.label: world.pending(r) for r in world.rows}
        for row in world.rows:
            assert world.held(row) == candidates[row.label] != world.initial[row.label]
        assert writes == len(world.rows)
        monkeypatch.setenv("VAULT_TOKEN", world.token)
        assert_converges_on(world, {k: v for k, v in candidates.items() if v is not None})
    else:
        # No candidate could be staged: not a single target write, nothing changed.
        assert writes == 0
        assert snapshot(world, world.client) == before
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


# --- the targets --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "status"),
    [("branch-office", 500), ("branch-office", 503), ("gw1", 500), ("gw1", 503)],
)
def test_target_5xx_on_every_write_is_in_doubt_then_converges(
    world: World,
    endpoint: str,
    status: int,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    adopt(world)
    reconfigure(world, fast(retries=2))
    world.host.set_faults(endpoint, Faults(error_rate=1.0, error_status=status, writes_only=True))
    code, record = run(world, "--force")
    assert code == 1
    mine, others = split(record, endpoint)
    assert [i["status"] for i in mine] == [unsure(world, i) for i in mine]
    assert statuses(others) == {"rotated"}
    for item in mine:
        assert "outcome unknown after 3 attempt(s)" in item["error"]
        if copy_only(world, item):
            assert "candidate kept pending" in item["error"]
    assert lockouts(world) == []
    candidates = pendings(world, endpoint)
    for row in world.rows_of(endpoint):
        # The fault answered before the write: the target still has its old password.
        assert world.held(row) == world.initial[row.label]
        if row.authority == "none":
            assert world.held(row) == world.current(row)
    assert_stale_on_the_new_password(world, endpoint)
    assert_converges_on(world, candidates)
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


def test_429_with_retry_after_is_waited_out_then_rotated(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    adopt(world)
    # A 20 ms backoff: only an honoured Retry-After makes the run last a second.
    reconfigure(world, fast(retries=3))
    faults = Faults(rate_limit_rate=1.0, retry_after_s=1, writes_only=True, max_faults=3)
    world.host.set_faults("branch-office", faults)
    started = time.monotonic()
    code, record = run(world, "--force")
    elapsed = time.monotonic() - started
    assert code == 0
    assert statuses(record["items"]) == {"rotated"}
    sim = world.host.simulator("branch-office")
    rows = world.rows_of("branch-office")
    read_backs = sum(r.kind == "computer" for r in rows)
    assert sim.faults.injected == 3
    # probe + one write per row + the 3 retried writes + the read-backs
    assert sim.counters.requests == 1 + len(rows) + 3 + read_backs
    assert sim.counters.writes == len(rows)
    assert elapsed >= 1.0
    assert converged(world) == []
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


def test_write_hanging_past_the_timeout_is_in_doubt_lands_late_then_converges(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    adopt(world)
    marker = "[endpoints.branch-office]\n"
    reconfigure(world, {**fast(retries=1), marker: f"{marker}timeout_s = 0.3\n"})
    world.host.set_faults("branch-office", Faults(hang_rate=1.0, hang_s=1.0, writes_only=True))
    code, record = run(world, "--force")
    assert code == 1
    mine, others = split(record, "branch-office")
    assert [i["status"] for i in mine] == [unsure(world, i) for i in mine]
    assert statuses(others) == {"rotated"}
    for item in mine:
        assert "no answer within the timeout" in item["error"]
        if copy_only(world, item):
            assert "candidate kept pending" in item["error"]
    assert lockouts(world) == []  # at every instant, the late writes still on their way
    # Each of the two attempts is applied once its hang is over, long after the client left.
    rows = world.rows_of("branch-office")
    sim = world.host.simulator("branch-office")
    assert wait_until(lambda: sim.counters.writes == 2 * len(rows), 10)
    candidates = pendings(world, "branch-office")
    for row in rows:
        landed = candidates[row.label] if row.authority == "none" else world.current(row)
        assert world.held(row) == landed != world.initial[row.label]
    assert lockouts(world) == []
    assert_stale_on_the_new_password(world, "branch-office")
    assert_converges_on(world, candidates)
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


@pytest.mark.parametrize(("drops", "outcome"), [(None, "in_doubt"), (2, "rotated")])
def test_dropped_connection_is_in_doubt_or_rotated_after_retry(
    world: World,
    drops: int | None,
    outcome: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    adopt(world)
    reconfigure(world, fast(retries=2))
    world.host.set_faults("gw2", Faults(drop_rate=1.0, writes_only=True, max_faults=drops))
    code, record = run(world, "--force")
    mine, others = split(record, "gw2")
    if outcome == "rotated":
        assert statuses(mine) == {outcome}
    else:
        assert [i["status"] for i in mine] == [unsure(world, i) for i in mine]
    assert statuses(others) == {"rotated"}
    assert lockouts(world) == []
    if outcome == "rotated":
        assert code == 0
        assert world.host.simulator("gw2").faults.injected == 2
        assert world.host.simulator("gw2").counters.writes == len(world.rows_of("gw2"))
        assert converged(world) == []
    else:
        assert code == 1
        for item in mine:
            assert "connection dropped" in item["error"]
            if copy_only(world, item):
                assert "candidate kept pending" in item["error"]
        candidates = pendings(world, "gw2")
        for row in world.rows_of("gw2"):
            assert world.held(row) == world.initial[row.label]
            if row.authority == "none":
                assert world.held(row) == world.current(row)
        assert_stale_on_the_new_password(world, "gw2")
        assert_converges_on(world, candidates)
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


@pytest.mark.parametrize("endpoint", ["branch-office", "gw1"])
def test_applied_then_failed_write_is_in_doubt_and_its_candidate_promoted(
    world: World,
    endpoint: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    adopt(world)
    reconfigure(world, fast(retries=1))
    world.host.set_faults(endpoint, Faults(apply_then_fail_rate=1.0))
    code, record = run(world, "--force")
    assert code == 1
    mine, others = split(record, endpoint)
    assert [i["status"] for i in mine] == [unsure(world, i) for i in mine]
    assert statuses(others) == {"rotated"}
    for item in mine:
        assert "outcome unknown after 2 attempt(s)" in item["error"]
        if copy_only(world, item):
            assert "candidate kept pending" in item["error"]
    assert lockouts(world) == []
    candidates = pendings(world, endpoint)
    for row in world.rows_of(endpoint):
        # The target took the new password, then said it failed. A copy-only account's
        # stays pending (Vault's current unchanged); one changed at its authority was
        # promoted, and its usage recorded stale.
        if row.authority == "none":
            assert world.held(row) == candidates[row.label] != world.initial[row.label]
            assert world.current(row) == world.initial[row.label]
        else:
            assert world.held(row) == world.current(row) != world.initial[row.label]
    assert_stale_on_the_new_password(world, endpoint)
    world.host.reset_counters(endpoint)
    assert_converges_on(world, candidates)
    # The clean run looked first where the API can read back (and found the new password
    # there: no write), and re-sent it once where it cannot.
    write_only = [r for r in world.rows_of(endpoint) if r.kind == "connection"]
    assert world.host.simulator(endpoint).counters.writes == len(write_only)
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


@pytest.mark.parametrize("cause", ["vnc-too-long", "reject-targets"])
def test_rejected_password_is_discarded_and_the_current_stays_valid(
    world: World,
    cause: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    adopt(world)
    if cause == "vnc-too-long":
        sim = world.host.simulator("office-mac")
        assert isinstance(sim, RemotixSimulator)
        sim.vnc_max_password = 6  # the demo's vnc policy makes 8 characters
        rejected = [r for r in world.rows_of("office-mac") if r.protocol == "VNC"]
        fragment = "a VNC password is at most 6 characters long"
    else:
        world.host.set_faults("gw2", Faults(reject_targets={"ops-rdp-01"}))
        world.host.set_faults("branch-office", Faults(reject_targets={"B10C-0001"}))
        rejected = [r for r in world.rows if r.target in ("ops-rdp-01", "B10C-0001")]
        fragment = "rejected"
    assert len(rejected) == 2
    code, record = run(world, "--force")
    assert code == 1
    items = items_by_label(record)
    for row in rejected:
        item = items.pop(row.label)
        assert "target rejected the new password" in item["error"]
        assert fragment in item["error"]
        assert world.pending(row) is None
        assert world.held(row) == world.initial[row.label]
        if row.authority == "none":
            # Copy-only: nothing else holds the candidate, so it goes.
            assert item["status"] == "failed"
            assert "candidate discarded, the current password stays valid" in item["error"]
            assert world.held(row) == world.current(row)
            assert world.version(row) == 1
        else:
            # Changed at the authority already: the usage is stale, the next run re-pushes.
            assert item["status"] == "stale"
            account = world.account(row.account)
            assert world.authority_password(account) == world.current(row)
            assert world.version(row) == 2
    others = list(items.values())
    assert statuses(others) == {"rotated"}
    assert lockouts(world) == []
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


def test_unknown_target_is_skipped_clearly_and_affects_nothing_else(
    world: World, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """A usage whose target is not at its endpoint is not attempted (issue 14), the reason
    named; its copy-only account, with no usage left to hold a candidate, drops it."""
    adopt(world)
    ghosts = {
        "office-mac,connection,FFFF-0000,RDP,,ghost,EXAMPLE,,none,default,,,,": (
            "connection not found"
        ),
        "office-mac,computer,999999,RDP,,ghost,,,none,default,,,,": "computer not found",
        "gw1,server,no-such-srv,RDP,,ghost,,,none,default,,,,": "is not defined on the gateway",
    }
    text = world.inventory.read_text().rstrip("\n") + "\n" + "\n".join(ghosts) + "\n"
    world.inventory.write_text(text)
    known = list(world.rows)
    world.rows = load_inventory(world.inventory, world.settings)
    code, record = run(world, "--force")
    assert code == 1
    items = items_by_label(record)
    for line, fragment in ghosts.items():
        row = next(r for r in world.rows if r.target == line.split(",")[2])
        item = items.pop(row.label)
        assert item["status"] == "not_attempted"
        assert item["error"].startswith(f"target missing at {row.endpoint}: ")
        assert fragment in item["error"]
        account = next(a for a in record["accounts"] if a["account"] == row.account)
        assert account["status"] == "not_attempted"
        assert "candidate discarded" in account["error"]
        assert world.version(row) is None
        assert world.pending(row) is None
        assert world.held(row) is None  # nothing was created on the target either
    assert statuses(list(items.values())) == {"rotated"}
    assert converged(world, known) == []
    writes = sum(world.host.simulator(n).counters.writes for n in world.states)
    assert writes == len(known)
    assert_no_secret_in_outputs(world, capsys.readouterr(), caplog)


# --- the simulator's fault settings these tests rely on -------------------------------------


def test_fault_settings_writes_only_and_max_faults_round_trip() -> None:
    faults = Faults(drop_rate=1.0, writes_only=True, max_faults=2)
    again = Faults.from_json(faults.to_json())
    assert (again.writes_only, again.max_faults) == (True, 2)
    assert [again.roll(1.0) for _ in range(3)] == [True, True, False]
    assert again.injected == 2
    with pytest.raises(ValueError, match="writes_only"):
        Faults.from_json({"writes_only": 1})
    with pytest.raises(ValueError, match="max_faults"):
        Faults(max_faults=-1)
