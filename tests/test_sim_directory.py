"""The LDAP directory stand-in (rotate.sim.directory), driven by real clients: ldap3, raw
sockets, and OpenLDAP's command-line tools."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ldap3
import pytest
from ldap3.core.exceptions import LDAPException
from ldap3.protocol import rfc4511
from ldap3.utils.conv import escape_filter_chars
from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import SubstrateUnderrunError

from rotate.sim.directory import DirectoryState
from rotate.sim.host import SimulatorHost
from rotate.sim.tls import SimTLS, make_tls

BASE = "dc=example,dc=org"
ADMIN = "cn=admin,dc=example,dc=org"
ADMIN_PW = "Admin-pw1"
AD_BASE = "DC=example,DC=net"
AD_ADMIN = "CN=rotate-svc,OU=Service,DC=example,DC=net"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> SimTLS:
    return make_tls(tmp_path_factory.mktemp("tls"))


@dataclass
class Directory:
    url: str
    state: DirectoryState
    alice: str  # DN
    plain_url: str = ""  # ad: a plain port offering StartTLS


@pytest.fixture
def ldap_dir(sim_host: SimulatorHost, tls: SimTLS) -> Directory:
    state = DirectoryState("ldap", BASE)
    state.add_admin(ADMIN, ADMIN_PW)
    alice = state.add_user("alice", "Alice-pw1")
    state.add_user("admin1", "Admin1-pw")
    state.add_user("bob", "Bob-pw12")
    url = sim_host.add_directory("ldap", state, starttls=tls.server)
    return Directory(url, state, alice)


@pytest.fixture
def ad_dir(sim_host: SimulatorHost, tls: SimTLS) -> Directory:
    state = DirectoryState("ad", AD_BASE)
    state.add_admin(AD_ADMIN, "Adm1n-pass")
    alice = state.add_user("Alice", "Alice-pw1")
    url = sim_host.add_directory("ad", state, tls=tls.server)
    plain = sim_host.add_directory("ad-plain", state, starttls=tls.server)
    return Directory(url, state, alice, plain)


def client_tls(tls: SimTLS) -> ldap3.Tls:
    return ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=str(tls.ca_file))


def connect(url: str, user: str | None = None, password: str | None = None, **kw: Any) -> Any:
    tls = kw.pop("tls", None)
    server = ldap3.Server(url, get_info=kw.pop("get_info", ldap3.NONE), tls=tls, connect_timeout=5)
    # receive_timeout must be an int (ldap3 packs it with struct for SO_RCVTIMEO)
    timeout = int(kw.pop("timeout", 5))
    return ldap3.Connection(
        server, user, password, receive_timeout=timeout, return_empty_attributes=False, **kw
    )


def bound(url: str, user: str, password: str, **kw: Any) -> Any:
    conn = connect(url, user, password, **kw)
    assert conn.bind(), conn.result
    return conn


# -- raw protocol helpers -----------------------------------------------------------------


def message(message_id: int, name: str, op: Any) -> bytes:
    msg = rfc4511.LDAPMessage()
    msg["messageID"] = message_id
    msg["protocolOp"] = rfc4511.ProtocolOp().setComponentByName(name, op)
    return bytes(encoder.encode(msg))


def bind_request(message_id: int, dn: str, password: str) -> bytes:
    req = rfc4511.BindRequest()
    req["version"] = 3
    req["name"] = dn
    req["authentication"] = rfc4511.AuthenticationChoice().setComponentByName(
        "simple", rfc4511.Simple(password)
    )
    return message(message_id, "bindRequest", req)


def whoami_request(message_id: int) -> bytes:
    req = rfc4511.ExtendedRequest()
    req["requestName"] = "1.3.6.1.4.1.4203.1.11.3"
    return message(message_id, "extendedReq", req)


def search_request(message_id: int, base: str) -> bytes:
    from ldap3.operation.search import search_operation

    req = search_operation(base, "(objectClass=*)", ldap3.SUBTREE, 0, [], False, 0, 0, None, False)
    return message(message_id, "searchRequest", req)


def receive(sock: socket.socket, count: int) -> list[Any]:
    """`count` LDAP messages (decoded), reading as many chunks as needed."""
    buf = b""
    out: list[Any] = []
    while len(out) < count:
        try:
            msg, rest = decoder.decode(buf, asn1Spec=rfc4511.LDAPMessage())
        except SubstrateUnderrunError:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {len(out)} messages"
            buf += chunk
            continue
        out.append(msg)
        buf = rest
    return out


def result_code(msg: Any) -> int:
    return int(msg["protocolOp"].getComponent()["resultCode"])


def raw(url: str) -> socket.socket:
    host, port = url.rsplit("/", 1)[1].split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        pass
    return True


# -- bind -----------------------------------------------------------------------------------


def test_admin_bind_succeeds_and_wrong_password_or_unknown_dn_is_49(ldap_dir: Directory) -> None:
    assert connect(ldap_dir.url, ADMIN, ADMIN_PW).bind()
    wrong = connect(ldap_dir.url, ADMIN, "not-it")
    assert not wrong.bind()
    assert wrong.result["result"] == 49
    unknown = connect(ldap_dir.url, "cn=nobody,dc=example,dc=org", ADMIN_PW)
    assert not unknown.bind()
    assert unknown.result["result"] == 49
    counters = ldap_dir.state.counters
    assert (counters.binds, counters.bind_failures) == (3, 2)


def test_a_dn_with_an_empty_password_binds_but_stays_anonymous(ldap_dir: Directory) -> None:
    with raw(ldap_dir.url) as sock:
        sock.sendall(bind_request(1, ADMIN, ""))
        (bind,) = receive(sock, 1)
        assert result_code(bind) == 0  # an unauthenticated bind "succeeds" (RFC 4513)
        sock.sendall(whoami_request(2) + search_request(3, BASE))
        whoami, search = receive(sock, 2)
        assert bytes(whoami["protocolOp"].getComponent()["responseValue"]) == b""
        assert search["protocolOp"].getName() == "searchResDone"
        assert result_code(search) == 50
        # the same connection with the password is the admin
        sock.sendall(bind_request(4, ADMIN, ADMIN_PW) + whoami_request(5))
        bind, whoami = receive(sock, 2)
        assert result_code(bind) == 0
        assert bytes(whoami["protocolOp"].getComponent()["responseValue"]) == f"dn:{ADMIN}".encode()


def test_sasl_bind_is_not_supported(ldap_dir: Directory) -> None:
    conn = connect(ldap_dir.url, authentication=ldap3.SASL, sasl_mechanism=ldap3.EXTERNAL)
    assert not conn.bind()
    assert conn.result["result"] == 7


# -- search ---------------------------------------------------------------------------------


def test_root_dse_is_open_and_other_searches_need_a_bind(ldap_dir: Directory) -> None:
    anon = connect(ldap_dir.url)
    anon.bind()
    assert anon.search("", "(objectClass=*)", ldap3.BASE, attributes=["*"])
    dse = anon.response[0]["attributes"]
    assert dse["namingContexts"] == [BASE]
    assert "1.3.6.1.4.1.4203.1.11.1" in dse["supportedExtension"]
    assert "1.3.6.1.4.1.1466.20037" in dse["supportedExtension"]
    assert not anon.search(BASE, "(objectClass=*)")
    assert anon.result["result"] == 50
    # ldap3's own server-info read (get_info=ALL) works against it
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW, get_info=ldap3.ALL)
    assert conn.server.info.naming_contexts == [BASE]


def test_user_search_with_escaped_filters_is_literal(ldap_dir: Directory) -> None:
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW)

    def uids(flt: str) -> list[str]:
        conn.search(BASE, flt, attributes=["uid"])  # False when nothing is found
        assert conn.result["result"] == 0, conn.result
        return sorted(e.uid.value for e in conn.entries)

    assert uids(f"(uid={escape_filter_chars('*)(uid=*')})") == []
    assert uids(f"(uid={escape_filter_chars('admin*')})") == []
    assert uids("(uid=admin*)") == ["admin1"]  # unescaped, it is a substring filter
    assert uids(f"(uid={escape_filter_chars('ALICE')})") == ["alice"]  # case-insensitive
    odd = "o'brien, jr (*)"
    dn = ldap_dir.state.add_user(odd, "Obrien-pw1")
    assert dn == r"uid=o'brien\, jr (*),ou=people,dc=example,dc=org"
    assert conn.search(BASE, f"(uid={escape_filter_chars(odd)})")
    assert [e.entry_dn for e in conn.entries] == [dn]
    assert connect(ldap_dir.url, dn, "Obrien-pw1").bind()
    assert connect(ldap_dir.url, dn.upper().replace("OU=PEOPLE", "ou=People"), "Obrien-pw1").bind()


def test_filters_scopes_and_size_limit(ldap_dir: Directory) -> None:
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW)

    def count(base: str, flt: str, scope: str = ldap3.SUBTREE) -> int:
        conn.search(base, flt, scope)
        assert conn.result["result"] == 0, conn.result
        return len(conn.entries)

    people = f"ou=people,{BASE}"
    assert count(BASE, "(objectClass=inetOrgPerson)") == 3
    assert count(BASE, "(&(objectClass=person)(!(uid=alice)))") == 2
    assert count(BASE, "(|(uid=alice)(uid=bob)(uid=nobody))") == 2
    assert count(BASE, "(uid=*li*e)") == 1
    assert count(BASE, "(uid=a*1)") == 1
    assert count(BASE, "(!(uid=*))") == 3  # base, ou=people, the admin
    assert count(BASE, "(uid>=a)") == 0  # no ordering rules: undefined
    assert count(people, "(objectClass=*)", ldap3.BASE) == 1
    assert count(people, "(objectClass=*)", ldap3.LEVEL) == 3
    assert count(BASE, "(objectClass=*)", ldap3.LEVEL) == 2  # ou=people, cn=admin
    assert not conn.search(f"ou=nowhere,{BASE}", "(objectClass=*)")
    assert conn.result["result"] == 32
    assert conn.result["dn"] == BASE
    conn.search(BASE, "(objectClass=inetOrgPerson)", size_limit=2)
    assert conn.result["result"] == 4
    assert len(conn.response) == 2


def test_password_attributes_are_never_returned(ldap_dir: Directory) -> None:
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW)
    assert conn.search(BASE, "(uid=alice)", attributes=["*", "+", "userPassword"])
    attrs = {k.lower() for k in conn.response[0]["raw_attributes"]}
    assert "uid" in attrs
    assert "userpassword" not in attrs
    conn.search(BASE, "(userPassword=*)")
    assert conn.result["result"] == 0
    assert conn.entries == []
    assert conn.search(BASE, "(uid=alice)", attributes=["1.1"])
    assert conn.response[0]["raw_attributes"] == {}


# -- password changes (ldap flavour) --------------------------------------------------------


def test_password_modify_by_the_admin(ldap_dir: Directory) -> None:
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW)
    assert conn.extend.standard.modify_password(ldap_dir.alice, new_password="Fresh-pw9")
    assert ldap_dir.state.password("alice") == "Fresh-pw9"
    assert ldap_dir.state.counters.changes == 1
    assert connect(ldap_dir.url, ldap_dir.alice, "Fresh-pw9").bind()
    old = connect(ldap_dir.url, ldap_dir.alice, "Alice-pw1")
    assert not old.bind()
    assert old.result["result"] == 49


def test_self_change_needs_the_right_old_password(ldap_dir: Directory) -> None:
    me = bound(ldap_dir.url, ldap_dir.alice, "Alice-pw1")
    ext = me.extend.standard
    assert not ext.modify_password(
        ldap_dir.alice, old_password="wrong-one", new_password="Mine-pw22"
    )
    assert me.result["result"] == 53
    assert not ext.modify_password(ldap_dir.alice, new_password="Mine-pw22")
    assert me.result["result"] == 53
    bob = ldap_dir.state.dn_of("bob")
    assert not ext.modify_password(bob, old_password="Bob-pw12", new_password="Mine-pw22")
    assert me.result["result"] == 50
    assert ldap_dir.state.counters.changes == 0
    assert ext.modify_password(ldap_dir.alice, old_password="Alice-pw1", new_password="Mine-pw22")
    assert ldap_dir.state.logs_in("alice", "Mine-pw22")
    anon = connect(ldap_dir.url)
    anon.bind()
    assert not anon.extend.standard.modify_password(ldap_dir.alice, new_password="Anon-pw22")
    assert anon.result["result"] == 8


def test_policy_and_refuse_hook_give_constraint_violation(ldap_dir: Directory) -> None:
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW)
    assert not conn.extend.standard.modify_password(ldap_dir.alice, new_password="short")
    assert conn.result["result"] == 19
    assert conn.result["message"] == "Password fails quality checking policy"
    ldap_dir.state.refuse = lambda user, pw: "Password is in history" if pw == "Used-pw99" else None
    assert not conn.extend.standard.modify_password(ldap_dir.alice, new_password="Used-pw99")
    assert conn.result["result"] == 19
    assert "history" in conn.result["message"]
    assert ldap_dir.state.password("alice") == "Alice-pw1"
    assert ldap_dir.state.counters.refused_changes == 2


def test_modify_user_password_by_admin_only(ldap_dir: Directory) -> None:
    change = {"userPassword": [(ldap3.MODIFY_REPLACE, ["Replaced-1"])]}
    me = bound(ldap_dir.url, ldap_dir.alice, "Alice-pw1")
    assert not me.modify(ldap_dir.alice, change)
    assert me.result["result"] == 50
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW)
    assert conn.modify(ldap_dir.alice, change)
    assert ldap_dir.state.password("alice") == "Replaced-1"
    assert not conn.modify(ldap_dir.alice, {"mail": [(ldap3.MODIFY_REPLACE, ["a@example.org"])]})
    assert conn.result["result"] == 53
    assert not conn.delete(ldap_dir.alice)
    assert conn.result["result"] == 53


# -- Active Directory flavour ---------------------------------------------------------------


def test_ad_password_reset_over_ldaps(ad_dir: Directory, tls: SimTLS) -> None:
    conn = bound(ad_dir.url, AD_ADMIN, "Adm1n-pass", tls=client_tls(tls))
    assert conn.extend.microsoft.modify_password(ad_dir.alice, "N3w-pass!")
    assert ad_dir.state.password("alice") == "N3w-pass!"
    for weak in ("alllowercase", "Alice-x123", "Sh0rt!"):  # 2 classes; has the name; too short
        assert not conn.extend.microsoft.modify_password(ad_dir.alice, weak)
        assert conn.result["result"] == 19
        assert "0000052D" in conn.result["message"]
    assert ad_dir.state.password("alice") == "N3w-pass!"
    # AD has no Password Modify extended operation
    assert not conn.extend.standard.modify_password(ad_dir.alice, new_password="Other-p4ss")
    assert conn.result["result"] in (2, 53)
    assert connect(ad_dir.url, "alice@example.net", "N3w-pass!", tls=client_tls(tls)).bind()


def test_ad_needs_tls_for_password_binds_and_changes(ad_dir: Directory, tls: SimTLS) -> None:
    plain = connect(ad_dir.plain_url, AD_ADMIN, "Adm1n-pass")
    assert not plain.bind()
    assert plain.result["result"] == 8
    anon = connect(ad_dir.plain_url)
    anon.bind()
    value = '"Plain-t3xt!"'.encode("utf-16-le")
    assert not anon.modify(ad_dir.alice, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [value])]})
    assert anon.result["result"] == 53
    assert "0000001F" in anon.result["message"]
    # after StartTLS the same port takes the bind
    conn = connect(ad_dir.plain_url, AD_ADMIN, "Adm1n-pass", tls=client_tls(tls))
    conn.open()
    assert conn.start_tls()
    assert conn.bind()
    assert conn.extend.standard.who_am_i() == "u:EXAMPLE\\rotate-svc"
    flt = (
        "(&(objectCategory=person)(objectClass=user)(sAMAccountName=ALICE)"
        "(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
    )
    assert conn.search(AD_BASE, flt, attributes=["sAMAccountName", "unicodePwd"])
    assert [e.entry_dn for e in conn.entries] == [ad_dir.alice]
    assert set(conn.response[0]["raw_attributes"]) == {"sAMAccountName"}


def test_ad_user_changes_own_password_with_the_old_one(ad_dir: Directory, tls: SimTLS) -> None:
    me = bound(ad_dir.url, "EXAMPLE\\alice", "Alice-pw1", tls=client_tls(tls))
    ms = me.extend.microsoft
    assert not ms.modify_password(ad_dir.alice, "Brand-n3w", old_password="Wrong-0ld")
    assert me.result["result"] == 19
    assert not ms.modify_password(ad_dir.alice, "Brand-n3w")  # a reset needs an admin
    assert me.result["result"] == 50
    assert ms.modify_password(ad_dir.alice, "Brand-n3w", old_password="Alice-pw1")
    assert ad_dir.state.logs_in("ALICE", "Brand-n3w")


def test_ldap_flavour_starttls(ldap_dir: Directory, tls: SimTLS) -> None:
    conn = connect(ldap_dir.url, ADMIN, ADMIN_PW, tls=client_tls(tls))
    conn.open()
    assert conn.start_tls()
    assert conn.bind()
    assert conn.extend.standard.who_am_i() == f"dn:{ADMIN}"
    assert conn.extend.standard.modify_password(ldap_dir.alice, new_password="Over-tls1")
    assert ldap_dir.state.password("alice") == "Over-tls1"


# -- framing, robustness, faults ------------------------------------------------------------


def test_framing_two_requests_in_one_write_and_one_split_across_writes(
    ldap_dir: Directory,
) -> None:
    with raw(ldap_dir.url) as sock:
        sock.sendall(bind_request(1, ADMIN, ADMIN_PW) + whoami_request(2))
        bind, whoami = receive(sock, 2)
        assert (int(bind["messageID"]), result_code(bind)) == (1, 0)
        assert int(whoami["messageID"]) == 2
        assert bytes(whoami["protocolOp"].getComponent()["responseValue"]) == f"dn:{ADMIN}".encode()
        data = bind_request(3, ldap_dir.alice, "Alice-pw1")
        for piece in (data[:1], data[1:3], data[3:10], data[10:]):
            sock.sendall(piece)
            time.sleep(0.02)
        (bind,) = receive(sock, 1)
        assert (int(bind["messageID"]), result_code(bind)) == (3, 0)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x04\x05hello",  # not a SEQUENCE
        b"\x30\x84\x7f\xff\xff\xff",  # 2 GiB announced
        b"\x30\x80\x00\x00",  # indefinite length
        b"\x30\x03\x02\x01\x01",  # a message ID and nothing else
    ],
)
def test_garbage_drops_the_connection_and_the_server_lives_on(
    ldap_dir: Directory, garbage: bytes
) -> None:
    with raw(ldap_dir.url) as sock:
        sock.sendall(garbage)
        (notice,) = receive(sock, 1)
        assert int(notice["messageID"]) == 0  # Notice of Disconnection
        assert result_code(notice) == 2
        assert closed_by_peer(sock)
    assert connect(ldap_dir.url, ADMIN, ADMIN_PW).bind()


def test_fifty_concurrent_binds(ldap_dir: Directory) -> None:
    ldap_dir.state.latency_s = 0.2
    results: list[bool] = []
    lock = threading.Lock()

    def one() -> None:
        ok = connect(ldap_dir.url, ldap_dir.alice, "Alice-pw1").bind()
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=one) for _ in range(50)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    assert results == [True] * 50
    counters = ldap_dir.state.counters
    assert counters.binds == 50
    assert counters.connections == 50
    assert counters.max_in_flight > 5
    assert elapsed < 5  # one after the other would take 10 s


def test_latency_fault_delays_each_answer(ldap_dir: Directory) -> None:
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW)
    ldap_dir.state.latency_s = 0.3
    started = time.monotonic()
    assert conn.search(BASE, "(uid=alice)")
    assert time.monotonic() - started >= 0.3


@pytest.mark.parametrize("apply_first", [True, False])
def test_hung_change_times_out_and_may_have_been_applied(
    ldap_dir: Directory, apply_first: bool
) -> None:
    conn = bound(ldap_dir.url, ADMIN, ADMIN_PW, timeout=1)
    ldap_dir.state.hang_changes = True
    ldap_dir.state.apply_before_hang = apply_first
    with pytest.raises(LDAPException):
        conn.extend.standard.modify_password(ldap_dir.alice, new_password="Hung-pw99")
    assert ldap_dir.state.counters.hung_changes == 1
    expected = "Hung-pw99" if apply_first else "Alice-pw1"
    assert ldap_dir.state.password("alice") == expected


def test_dropped_connections_fault(ldap_dir: Directory) -> None:
    ldap_dir.state.drop_connections = 1
    with pytest.raises(LDAPException):
        connect(ldap_dir.url, ADMIN, ADMIN_PW).bind()
    assert connect(ldap_dir.url, ADMIN, ADMIN_PW).bind()
    assert ldap_dir.state.counters.connections == 2


@pytest.mark.integration  # a socket of its own on loopback
def test_host_lists_and_stops_the_directory(tls: SimTLS) -> None:
    host = SimulatorHost(shutdown_timeout=0.2)
    try:
        state = DirectoryState("ldap", BASE)
        state.add_admin(ADMIN, ADMIN_PW)
        url = host.add_directory("dir", state, tls=tls.server)
        assert url.startswith("ldaps://127.0.0.1:")
        assert host.urls == {"dir": url}
        assert host.directory_state("dir") is state
        with pytest.raises(ValueError, match="already running"):
            host.add_directory("dir", state)
        hung = bound(url, ADMIN, ADMIN_PW, tls=client_tls(tls), timeout=5)
        state.hang_changes = True
        errors: list[BaseException] = []

        def change() -> None:
            try:
                hung.extend.standard.modify_password(ADMIN, new_password="Never-ans1")
            except BaseException as exc:
                errors.append(exc)

        waiter = threading.Thread(target=change)
        waiter.start()
        deadline = time.monotonic() + 5
        while state.counters.hung_changes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        started = time.monotonic()
        host.close()
    assert time.monotonic() - started < 2  # the hung operation did not hold the host
    waiter.join(5)
    assert errors  # the client saw its connection end
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


# -- OpenLDAP's command-line clients ----------------------------------------------------------


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} (Debian's ldap-utils) is required in CI")
        pytest.skip(f"{name} is not installed (apt-get install ldap-utils)")
    return path


@pytest.fixture
def cli_env(tmp_path: Path, tls: SimTLS) -> dict[str, str]:
    """No user or system ldap.conf, the simulators' CA trusted."""
    env = dict(os.environ, HOME=str(tmp_path), LDAPCONF="/dev/null", LDAPRC="none-here")
    env["LDAPTLS_CACERT"] = str(tls.ca_file)
    return env


def secret_file(path: Path, content: str) -> str:
    """A file holding a password (no newline: the tools read it whole), mode 0600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    return str(path)


def run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=10)


def test_ldapsearch_reads_the_root_dse(
    ldap_dir: Directory, cli_env: dict[str, str], tmp_path: Path
) -> None:
    done = run(
        [tool("ldapsearch"), "-x", "-LLL", "-H", ldap_dir.url, "-s", "base", "-b", ""],
        cli_env,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"namingContexts: {BASE}" in done.stdout
    assert "supportedLDAPVersion: 3" in done.stdout


def test_ldapwhoami_with_a_password_file(
    ldap_dir: Directory, cli_env: dict[str, str], tmp_path: Path
) -> None:
    good = secret_file(tmp_path / "admin.pw", ADMIN_PW)
    done = run(
        [tool("ldapwhoami"), "-x", "-H", ldap_dir.url, "-D", ADMIN, "-y", good], cli_env, tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"dn:{ADMIN}"
    empty = secret_file(tmp_path / "empty.pw", "")
    done = run(
        [tool("ldapwhoami"), "-x", "-H", ldap_dir.url, "-D", ADMIN, "-y", empty], cli_env, tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "anonymous"  # an unauthenticated bind
    wrong = secret_file(tmp_path / "wrong.pw", "not-it")
    done = run(
        [tool("ldapwhoami"), "-x", "-H", ldap_dir.url, "-D", ADMIN, "-y", wrong], cli_env, tmp_path
    )
    assert done.returncode == 49


def test_ldappasswd_sets_a_password_from_a_file(
    ldap_dir: Directory, cli_env: dict[str, str], tmp_path: Path
) -> None:
    admin = secret_file(tmp_path / "admin.pw", ADMIN_PW)
    new = secret_file(tmp_path / "new.pw", "From-file7")
    argv = [tool("ldappasswd"), "-x", "-ZZ", "-H", ldap_dir.url, "-D", ADMIN, "-y", admin]
    done = run([*argv, "-T", new, ldap_dir.alice], cli_env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert ldap_dir.state.password("alice") == "From-file7"
    short = secret_file(tmp_path / "short.pw", "tiny")
    done = run([*argv, "-T", short, ldap_dir.alice], cli_env, tmp_path)
    assert done.returncode != 0
    assert "Constraint violation (19)" in done.stdout
    assert ldap_dir.state.password("alice") == "From-file7"


def test_ldapwhoami_over_ldaps_against_ad(
    ad_dir: Directory, cli_env: dict[str, str], tmp_path: Path
) -> None:
    pw = secret_file(tmp_path / "ad.pw", "Adm1n-pass")
    done = run(
        [tool("ldapwhoami"), "-x", "-H", ad_dir.url, "-D", AD_ADMIN, "-y", pw], cli_env, tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "u:EXAMPLE\\rotate-svc"
