"""The `ldap` and `ad` authorities against real directories: slapd (type ldap) and Samba AD (ad).

The contract tests take a `directory` (one parameter per server); another directory (the
in-process stand-in of rotate/sim/directory.py, say) joins them by a fixture returning a
`Directory` and a name in DIRECTORIES.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trustme
from ldap3.core import exceptions as lx  # type: ignore[import-untyped,unused-ignore]

from rotate.authorities.ldap import AD, LDAP, LdapAuthority, LdapSettings, LdapType
from rotate.authorities.ldap_errors import exc_text
from rotate.errors import (
    AdminRefused,
    AuthorityUnavailable,
    ConfigError,
    OutcomeUnknown,
    Rejected,
    RemoteError,
)
from rotate.models import Account, Secret
from rotate.registry import authority_type
from rotate.sim.directory import DirectoryState
from rotate.sim.host import SimulatorHost
from rotate.sim.tls import make_tls
from tests.plugins.authority import exception_text, leaks
from tests.plugins.samba import SambaDC
from tests.plugins.slapd import STAFF_DN, Slapd, free_port, strong_password

BIND_ENV = "TEST_LDAP_BIND"


class FakeSecrets:
    """A SecretSource: environment variables from a dict, no Vault."""

    def __init__(self, values: dict[str, Secret]) -> None:
        self.values = values

    def secret(self, env_var: str | None, vault_ref: str | None, what: str) -> Secret:
        if env_var and env_var in self.values:
            return self.values[env_var]
        raise ConfigError(f"{what}: environment variable {env_var} is not set")


def account(username: str, authority: str = "dir") -> Account:
    return Account(
        name=username,
        authority=authority,
        username=username,
        domain=None,
        host=None,
        vault_path=f"accounts/{username}",
        policy="default",
        max_age_days=None,
        usages=(),
    )


@dataclass
class Directory:
    """A directory under test, as the contract tests see it."""

    kind: str  # the authority type: ldap | ad
    url: str
    base_dn: str
    admin_dn: str
    admin_password: Secret = field(repr=False)
    ca_file: Path | None
    add_user: Callable[[str, str], str]  # (login name, password) -> DN
    can_bind: Callable[[str, str], bool]  # (DN, password) -> bound?
    weak_password: str  # refused by the directory's policy
    freeze: Callable[[], None]  # stop answering (SIGSTOP; a stand-in's `frozen`) ...
    thaw: Callable[[], None]  # ... and answer again

    @property
    def attr(self) -> str:
        return "sAMAccountName" if self.kind == "ad" else "uid"

    def table(self, **overrides: Any) -> dict[str, Any]:
        table: dict[str, Any] = {
            "type": self.kind,
            "url": self.url,
            "bind_dn": self.admin_dn,
            "bind_password_env": BIND_ENV,
            "base_dn": self.base_dn,
            "timeout_s": 5.0,
        }
        if self.ca_file is not None:
            table["ca_bundle"] = str(self.ca_file)
        table.update(overrides)
        return {k: v for k, v in table.items() if v is not None}

    def settings(self, **overrides: Any) -> LdapSettings:
        plugin = authority_type(self.kind)
        assert plugin is not None
        errors: list[str] = []
        parsed = plugin.parse("dir", self.table(**overrides), errors)
        assert errors == []
        assert isinstance(parsed, LdapSettings)
        return parsed

    def authority(self, password: Secret | None = None, **overrides: Any) -> LdapAuthority:
        plugin = authority_type(self.kind)
        assert plugin is not None
        secrets_ = FakeSecrets({BIND_ENV: password or self.admin_password})
        built = plugin.build(self.settings(**overrides), secrets_)
        assert isinstance(built, LdapAuthority)
        return built

    def user(self) -> tuple[str, str, str]:
        """A new account: (login name, its DN, its password)."""
        name = f"t{secrets.token_hex(6)}"  # within AD's 20 characters
        password = strong_password()
        return name, self.add_user(name, password), password


@pytest.fixture
def slapd_directory(slapd: Slapd) -> Directory:
    return Directory(
        kind="ldap",
        url=slapd.ldaps_url,
        base_dn=slapd.base_dn,
        admin_dn=slapd.admin_dn,
        admin_password=slapd.admin_password,
        ca_file=slapd.ca_file,
        add_user=slapd.add_user,
        can_bind=slapd.can_bind,
        weak_password="short1",  # pwdMinLength 8
        freeze=slapd.freeze,
        thaw=slapd.thaw,
    )


@pytest.fixture
def samba_directory(samba: SambaDC) -> Directory:
    return Directory(
        kind="ad",
        url=samba.url,
        base_dn=samba.base_dn,
        admin_dn=samba.admin_dn,
        admin_password=samba.admin_password,
        ca_file=samba.ca_file,
        add_user=samba.add_user,
        can_bind=samba.can_bind,
        weak_password="short1",  # min length 7
        freeze=samba.freeze,
        thaw=samba.thaw,
    )


def standin(sim_host: SimulatorHost, tmp_path: Path, flavour: str, base_dn: str) -> Directory:
    """The in-process stand-in (rotate/sim/directory.py) the demo uses, over LDAPS: the same
    contract as the real servers, so it cannot drift from them."""
    state = DirectoryState("ad" if flavour == "ad" else "ldap", base_dn)
    admin_dn = f"cn=rotate,{base_dn}" if flavour == "ldap" else f"CN=rotate,CN=Users,{base_dn}"
    admin_password = strong_password()
    state.add_admin(admin_dn, admin_password)
    tls = make_tls(tmp_path / "standin-tls")
    url = sim_host.add_directory(f"standin-{flavour}", state, tls=tls.server)
    return Directory(
        kind=flavour,
        url=url,
        base_dn=base_dn,
        admin_dn=admin_dn,
        admin_password=Secret(admin_password),
        ca_file=tls.ca_file,
        add_user=state.add_user,
        can_bind=lambda dn, password: bool(password) and state.dn_password(dn) == password,
        weak_password="short1",  # min length 7
        freeze=lambda: setattr(state, "frozen", True),
        thaw=lambda: setattr(state, "frozen", False),
    )


@pytest.fixture
def standin_ldap_directory(sim_host: SimulatorHost, tmp_path: Path) -> Directory:
    return standin(sim_host, tmp_path, "ldap", "dc=example,dc=org")


@pytest.fixture
def standin_ad_directory(sim_host: SimulatorHost, tmp_path: Path) -> Directory:
    return standin(sim_host, tmp_path, "ad", "DC=example,DC=net")


#: directories the contract runs on: "<name>" needs a fixture "<name>_directory"; the real
#: servers first, then the stand-ins the demo uses
DIRECTORIES = [
    *(pytest.param(name, marks=pytest.mark.integration) for name in ("slapd", "samba")),
    "standin_ldap",
    "standin_ad",
]


@pytest.fixture(params=DIRECTORIES)
def directory(request: pytest.FixtureRequest) -> Directory:
    found: Directory = request.getfixturevalue(f"{request.param}_directory")
    return found


# --- the contract, on every directory ------------------------------------------------------


async def test_probe_binds_as_admin(directory: Directory, closing: Any) -> None:
    authority = directory.authority()
    closing(authority)
    text = await authority.probe()
    assert "answers" in text
    assert directory.admin_dn in text
    assert directory.url in text


async def test_wrong_admin_password_is_admin_refused(directory: Directory, closing: Any) -> None:
    wrong = strong_password()
    authority = directory.authority(password=Secret(wrong))
    closing(authority)
    with pytest.raises(AdminRefused) as caught:
        await authority.probe()
    assert "invalidCredentials (49)" in str(caught.value)
    assert not leaks([wrong, directory.admin_password.reveal()], exception_text(caught.value))


async def test_nothing_listening_is_authority_unavailable(
    directory: Directory, closing: Any
) -> None:
    scheme = directory.url.split("://")[0]
    authority = directory.authority(url=f"{scheme}://127.0.0.1:{free_port()}")
    closing(authority)
    with pytest.raises(AuthorityUnavailable) as caught:
        await authority.probe()
    assert "refused" in str(caught.value).lower()


async def test_untrusted_certificate_is_authority_unavailable(
    directory: Directory, closing: Any, tmp_path: Path
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    authority = directory.authority(ca_bundle=str(other_ca))
    closing(authority)
    with pytest.raises(AuthorityUnavailable) as caught:
        await authority.probe()
    assert "TLS" in str(caught.value)
    assert "certificate verify failed" in str(caught.value)


async def test_login_tells_right_from_wrong(directory: Directory, closing: Any) -> None:
    name, _, password = directory.user()
    authority = directory.authority()
    closing(authority)
    assert await authority.login(account(name), Secret(password)) is True
    assert await authority.login(account(name), Secret(password + "x")) is False
    assert await authority.login(account(name), Secret(strong_password())) is False
    # the same connections serve again
    assert await authority.login(account(name), Secret(password)) is True


async def test_empty_password_never_logs_in(directory: Directory, closing: Any) -> None:
    name, _, _ = directory.user()
    authority = directory.authority()
    closing(authority)
    assert await authority.login(account(name), Secret("")) is False


async def test_change_then_only_the_new_password_logs_in(
    directory: Directory, closing: Any
) -> None:
    name, dn, old = directory.user()
    new = strong_password()
    authority = directory.authority()
    closing(authority)
    await authority.change(account(name), Secret(new))
    assert await authority.login(account(name), Secret(new)) is True
    assert await authority.login(account(name), Secret(old)) is False
    # and the directory says so to another client
    assert directory.can_bind(dn, new)
    assert not directory.can_bind(dn, old)


async def test_refused_password_is_rejected_and_nothing_changes(
    directory: Directory, closing: Any
) -> None:
    name, dn, old = directory.user()
    authority = directory.authority()
    closing(authority)
    with pytest.raises(Rejected) as caught:
        await authority.change(account(name), Secret(directory.weak_password))
    message = str(caught.value)
    assert "refused the password: complexity, length or history" in message
    if directory.kind == "ad":
        assert "0000052D" in message
    assert directory.weak_password not in exception_text(caught.value)
    assert await authority.login(account(name), Secret(old)) is True
    assert await authority.login(account(name), Secret(directory.weak_password)) is False
    assert directory.can_bind(dn, old)


async def test_admin_without_rights_is_rejected(directory: Directory, closing: Any) -> None:
    """rotate's bind DN may log in but not reset others' passwords: a definite "no"."""
    _, weak_admin_dn, weak_admin_password = directory.user()
    name, dn, old = directory.user()
    authority = directory.authority(password=Secret(weak_admin_password), bind_dn=weak_admin_dn)
    closing(authority)
    assert "answers" in await authority.probe()
    with pytest.raises(Rejected, match="rotate's admin may not reset this password"):
        await authority.change(account(name), Secret(strong_password()))
    assert directory.can_bind(dn, old)


INJECTIONS = [
    "*",
    "*)({attr}=*",
    "{name})(|({attr}=*",
    "{name}*",
    "*{tail}",
    "{name}\x00",
    "{dn}",
    "{rdn_value},{parent}",
]


@pytest.mark.parametrize("template", INJECTIONS)
async def test_injected_usernames_find_nothing(
    directory: Directory, closing: Any, template: str
) -> None:
    name, dn, old = directory.user()
    _other, other_dn, other_old = directory.user()
    _rdn, _, parent = dn.partition(",")
    hostile = template.format(
        attr=directory.attr, name=name, tail=name[2:], dn=dn, rdn_value=name, parent=parent
    )
    new = strong_password()
    authority = directory.authority()
    closing(authority)
    with pytest.raises(Rejected, match="no account"):
        await authority.change(account(hostile), Secret(new))
    with pytest.raises(Rejected):
        await authority.login(account(hostile), Secret(old))
    # nobody's password changed
    for user_dn, password in ((dn, old), (other_dn, other_old)):
        assert directory.can_bind(user_dn, password)
        assert not directory.can_bind(user_dn, new)


async def test_twenty_concurrent_changes_on_two_connections(
    directory: Directory, closing: Any
) -> None:
    users = [directory.user() for _ in range(20)]
    authority = directory.authority(connections=2)
    closing(authority)
    news = {name: strong_password() for name, _, _ in users}
    await asyncio.gather(*(authority.change(account(n), Secret(p)) for n, p in news.items()))
    logins = await asyncio.gather(
        *(authority.login(account(n), Secret(p)) for n, p in news.items())
    )
    assert logins == [True] * 20
    olds = await asyncio.gather(*(authority.login(account(n), Secret(o)) for n, _, o in users))
    assert olds == [False] * 20
    assert 1 <= len(authority._executor._threads) <= 2
    assert len(authority._admins) <= 2
    assert len(authority._logins) <= 2


async def test_no_secret_in_errors_or_logs(
    directory: Directory, closing: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("ldap3").setLevel(logging.DEBUG)
    name, _, old = directory.user()
    new = strong_password()
    wrong_admin = strong_password()
    weak = directory.weak_password
    raised: list[BaseException] = []
    authority = directory.authority()
    refused = directory.authority(password=Secret(wrong_admin))
    unreachable = directory.authority(url=f"ldaps://127.0.0.1:{free_port()}")
    for a in (authority, refused, unreachable):
        closing(a)
    await authority.probe()
    assert await authority.login(account(name), Secret(new)) is False
    await authority.change(account(name), Secret(new))
    assert await authority.login(account(name), Secret(old)) is False
    for call in (
        authority.change(account(name), Secret(weak)),
        authority.change(account("*)(uid=*"), Secret(new)),
        authority.login(account("nobody-" + name), Secret(new)),
        refused.probe(),
        unreachable.change(account(name), Secret(new)),
    ):
        try:
            await call
        except Exception as exc:
            raised.append(exc)
    assert len(raised) == 5
    values = [new, old, weak, wrong_admin, directory.admin_password.reveal()]
    texts = [exception_text(e) for e in raised]
    assert not leaks(values, *texts, caplog.text, repr(authority), repr(authority.settings))
    assert any("changed" in r.getMessage() for r in caplog.records)  # logging was captured


async def test_stuck_server_change_is_not_success(directory: Directory, closing: Any) -> None:
    name, dn, old = directory.user()
    new = strong_password()
    authority = directory.authority(timeout_s=1.0)
    closing(authority)
    await authority.probe()
    directory.freeze()
    try:
        with pytest.raises(RemoteError) as caught:
            await authority.change(account(name), Secret(new))
        assert not isinstance(caught.value, Rejected)
        assert "no answer in time" in str(caught.value)
    finally:
        directory.thaw()
    # the search that opens a change timed out: the change itself was never sent
    assert directory.can_bind(dn, old)
    assert not directory.can_bind(dn, new)
    # and the authority recovers once the server answers again
    assert await authority.login(account(name), Secret(old)) is True


def test_a_bind_that_timed_out_says_so_though_ldap3_calls_it_a_closed_connection() -> None:
    """ldap3's rebind turns a receive timeout into "the server abruptly closed the
    connection"; the cause it was raised from still says what happened."""
    try:
        try:
            raise lx.LDAPSocketReceiveError("error receiving data: timed out")
        except lx.LDAPSocketReceiveError:
            raise lx.LDAPBindError("Unable to rebind, the server abruptly closed the connection")  # noqa: B904
    except lx.LDAPBindError as exc:
        text = exc_text(exc, ())
    assert text == "no answer in time (Unable to rebind, the server abruptly closed the connection)"
    closed = lx.LDAPBindError("the server abruptly closed the connection")
    assert exc_text(closed, ()) == "the server abruptly closed the connection"


# --- slapd only: TLS flavours, restarts, a server killed after the request ---------------


async def test_starttls_and_plain_loopback(slapd: Slapd, closing: Any) -> None:
    name, _, old = slapd_user(slapd)
    for overrides in (
        {"url": slapd.url, "starttls": True, "ca_bundle": str(slapd.ca_file)},
        {"url": slapd.url},  # clear text: allowed on loopback only
    ):
        authority = build(LDAP, slapd, **overrides)
        closing(authority)
        assert "answers" in await authority.probe()
        assert await authority.login(account(name), Secret(old)) is True
        new = strong_password()
        await authority.change(account(name), Secret(new))
        assert await authority.login(account(name), Secret(new)) is True
        old = new


@pytest.mark.integration  # a socket of its own on loopback
async def test_host_name_is_checked(closing: Any, tmp_path: Path) -> None:
    """A certificate from a trusted CA, for another name: refused (ldap3 alone would not)."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("other.example").configure_cert(context)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(ssl.SSLError, OSError):
            context.wrap_socket(conn, server_side=True)
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    errors: list[str] = []
    settings = LDAP.parse(
        "dir",
        {
            "type": "ldap",
            "url": f"ldaps://127.0.0.1:{port}",
            "bind_dn": "cn=admin,dc=example,dc=org",
            "bind_password_env": BIND_ENV,
            "base_dn": "dc=example,dc=org",
            "ca_bundle": str(tmp_path / "ca.pem"),
            "timeout_s": 3.0,
        },
        errors,
    )
    assert settings is not None, errors
    authority = LDAP.build(settings, FakeSecrets({BIND_ENV: Secret("x")}))
    closing(authority)
    with pytest.raises(AuthorityUnavailable) as caught:
        await authority.probe()
    assert "TLS" in str(caught.value)
    assert "127.0.0.1" in str(caught.value)
    thread.join(5)
    listener.close()


async def test_reconnects_after_a_restart(private_slapd: Slapd, closing: Any) -> None:
    name, _, old = slapd_user(private_slapd)
    authority = build(LDAP, private_slapd)
    closing(authority)
    await authority.probe()
    assert await authority.login(account(name), Secret(old)) is True
    private_slapd.stop()
    with pytest.raises(RemoteError) as caught:
        await authority.login(account(name), Secret(old))
    assert not isinstance(caught.value, Rejected)
    private_slapd.start()
    # the pooled admin and login connections are dead: replaced without the caller noticing
    assert await authority.login(account(name), Secret(old)) is True
    new = strong_password()
    await authority.change(account(name), Secret(new))
    assert await authority.login(account(name), Secret(new)) is True


async def test_server_killed_after_the_request_is_outcome_unknown(
    private_slapd: Slapd, closing: Any
) -> None:
    """The Password Modify request reaches slapd, which dies before answering."""
    name, _, _ = slapd_user(private_slapd)
    new = strong_password()
    with CutProxy(private_slapd.port, b"1.3.6.1.4.1.4203.1.11.1", private_slapd.kill) as proxy:
        authority = build(LDAP, private_slapd, url=f"ldap://127.0.0.1:{proxy.port}")
        closing(authority)
        await authority.probe()
        with pytest.raises(OutcomeUnknown) as caught:
            await authority.change(account(name), Secret(new))
        assert proxy.cut
    assert "may or may not" in str(caught.value)
    assert new not in exception_text(caught.value)
    with pytest.raises(RemoteError):  # and the dead server is not taken for a "no"
        await authority.login(account(name), Secret(new))


async def test_missing_base_dn_is_authority_unavailable(slapd: Slapd, closing: Any) -> None:
    authority = build(LDAP, slapd, base_dn="ou=nowhere,dc=example,dc=org")
    closing(authority)
    with pytest.raises(AuthorityUnavailable, match="noSuchObject"):
        await authority.probe()


async def test_escaped_filter_finds_the_literal_name(slapd: Slapd, closing: Any) -> None:
    """RFC 4515 escaping is exact: a uid with filter characters is found, and only it."""
    weird = f"w(e)i*r\\d-{secrets.token_hex(3)}"
    password = strong_password()
    slapd.add_user(weird, password)
    authority = build(LDAP, slapd)
    closing(authority)
    assert await authority.login(account(weird), Secret(password)) is True
    new = strong_password()
    await authority.change(account(weird), Secret(new))
    assert await authority.login(account(weird), Secret(new)) is True
    with pytest.raises(Rejected):
        await authority.login(account(weird[:-1]), Secret(new))


async def test_ambiguous_name_is_rejected(slapd: Slapd, closing: Any) -> None:
    name, dn, old = slapd_user(slapd)
    slapd.add_user(name, old, container=STAFF_DN)
    authority = build(LDAP, slapd)
    closing(authority)
    with pytest.raises(Rejected) as caught:
        await authority.change(account(name), Secret(strong_password()))
    assert "more than one" in str(caught.value)
    assert slapd.can_bind(dn, old)


async def test_ad_complexity_refusal(samba: SambaDC, closing: Any) -> None:
    name = f"t{secrets.token_hex(6)}"
    old = strong_password()
    dn = samba.add_user(name, old)
    authority = build(AD, samba)
    closing(authority)
    with pytest.raises(Rejected) as caught:
        await authority.change(account(name), Secret("alllowercaseletters"))
    assert "0000052D" in str(caught.value)
    assert samba.can_bind(dn, old)


def slapd_user(slapd: Slapd) -> tuple[str, str, str]:
    name = f"t{secrets.token_hex(6)}"
    password = strong_password()
    return name, slapd.add_user(name, password), password


def build(kind: LdapType, server: Slapd | SambaDC, **overrides: Any) -> LdapAuthority:
    table: dict[str, Any] = {
        "type": kind.name,
        "url": server.ldaps_url if isinstance(server, Slapd) else server.url,
        "bind_dn": server.admin_dn,
        "bind_password_env": BIND_ENV,
        "base_dn": server.base_dn,
        "ca_bundle": str(server.ca_file),
        "timeout_s": 5.0,
    }
    table.update(overrides)
    if not table["url"].startswith("ldaps://") and not table.get("starttls"):
        table.pop("ca_bundle")
    errors: list[str] = []
    settings = kind.parse("dir", table, errors)
    assert settings is not None, errors
    built = kind.build(settings, FakeSecrets({BIND_ENV: server.admin_password}))
    assert isinstance(built, LdapAuthority)
    return built


class CutProxy:
    """A TCP relay to a local server that, once a client message contains `marker`, relays
    it, stops relaying answers, runs `then()` (kill the server) and drops the client."""

    def __init__(self, target_port: int, marker: bytes, then: Callable[[], None]) -> None:
        self.target_port = target_port
        self.marker = marker
        self.then = then
        self.cut = False
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []

    def __enter__(self) -> CutProxy:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the server is gone: so is the client's connection
                client.close()
                continue
            self.sockets += [client, server]
            threading.Thread(target=self._up, args=(client, server), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket) -> None:
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                return
            server.sendall(data)
            if self.marker in data:
                self.cut = True
                self.then()
                client.shutdown(socket.SHUT_RDWR)
                return

    def _down(self, server: socket.socket, client: socket.socket) -> None:
        while True:
            try:
                data = server.recv(65536)
            except OSError:
                return
            if not data or self.cut:
                return
            client.sendall(data)


# --- config and login names (no server) ----------------------------------------------------


def parse(kind: LdapType, **table: Any) -> tuple[LdapSettings | None, list[str]]:
    errors: list[str] = []
    base: dict[str, Any] = {
        "type": kind.name,
        "url": "ldaps://dc1.example.net",
        "bind_dn": "CN=rotate-svc,OU=Service,DC=example,DC=net",
        "bind_password_env": "CORP_AD_BIND",
        "base_dn": "DC=example,DC=net",
    }
    base.update(table)
    settings = kind.parse("corp", {k: v for k, v in base.items() if v is not None}, errors)
    assert settings is None or isinstance(settings, LdapSettings)
    return settings, errors


def test_registry_finds_both_types() -> None:
    assert authority_type("ldap") is LDAP
    assert authority_type("ad") is AD


def test_defaults_by_type() -> None:
    ad, errors = parse(AD)
    assert errors == []
    assert ad is not None
    assert (ad.type, ad.user_attr, ad.timeout_s, ad.connections) == ("ad", "sAMAccountName", 10, 4)
    assert ad.user_filter == "(&(objectClass=user)(objectCategory=person))"
    ldap, errors = parse(LDAP, url="ldap://127.0.0.1:3389")
    assert errors == []
    assert ldap is not None
    assert (ldap.type, ldap.user_attr, ldap.user_filter) == (
        "ldap",
        "uid",
        "(objectClass=inetOrgPerson)",
    )


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    settings, errors = parse(
        AD,
        url="ldap://dc1.example.net",
        bind_dn="not a dn",
        bind_password="hunter2",
        bind_password_vault="rotate/ad",
        insecure=True,
        ca_bundle=str(tmp_path / "missing.pem"),
        user_filter="(objectClass=user",
        user_attr="bad attr",
        timeout_s=0,
        connections=0,
        colour="blue",
    )
    assert settings is None
    text = "\n".join(errors)
    for expected in (
        "authorities.corp.bind_password: secrets never live in the config file",
        "Active Directory refuses simple binds without TLS",
        "bind_dn: 'not a dn' is not a valid DN",
        "exactly one of bind_password_env and bind_password_vault",
        "bind_password_vault: expected '<path>#<key>'",
        "insecure = true and ca_bundle contradict each other",
        "missing.pem' does not exist",
        "user_filter: '(objectClass=user' is not a valid LDAP filter",
        "user_attr: 'bad attr' is not an attribute name",
        "timeout_s: must be greater than 0",
        "connections: must be greater than 0",
        "unknown key 'colour'",
    ):
        assert expected in text
    assert "hunter2" not in text


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        ({"url": None, "base_dn": None}, "missing required key 'url'"),
        ({"base_dn": ""}, "base_dn: must not be empty"),
        ({"url": "https://dc1"}, "is not an ldap:// or ldaps:// URL"),
        ({"url": "ldaps://svc:pw@dc1"}, "must not carry a user name or password"),
        ({"url": "ldaps://dc1/DC=x"}, "must be scheme://host[:port] only"),
        ({"url": "ldaps://dc1:99999"}, "invalid host or port"),
        ({"starttls": True}, "starttls = true with an ldaps:// URL"),
        ({"bind_password_env": None}, "exactly one of"),
        ({"connections": 500}, "connections: at most 64"),
        ({"timeout_s": 1e9}, "timeout_s: must be at most"),
    ],
)
def test_config_problems(table: dict[str, Any], expected: str) -> None:
    settings, errors = parse(LDAP, **table)
    assert settings is None
    assert any(expected in e for e in errors), errors
    assert not any("pw@" in e for e in errors)


def test_clear_text_ldap_only_on_loopback() -> None:
    assert parse(LDAP, url="ldap://127.0.0.1:389")[1] == []
    assert parse(LDAP, url="ldap://localhost")[1] == []
    _, errors = parse(LDAP, url="ldap://ldap.example.net")
    assert any("clear text" in e for e in errors)
    assert parse(LDAP, url="ldap://ldap.example.net", starttls=True)[1] == []
    assert parse(LDAP, url="ldap://ldap.example.net", insecure=True)[1] == []
    assert parse(AD, url="ldap://dc1.example.net", starttls=True)[1] == []
    _, errors = parse(AD, url="ldap://127.0.0.1")  # AD: TLS even on loopback
    assert any("without TLS" in e for e in errors)


def test_type_key_is_ignored_and_vault_reference_accepted() -> None:
    settings, errors = parse(LDAP, bind_password_env=None, bind_password_vault="rotate/ldap#bind")
    assert errors == []
    assert settings is not None
    assert settings.type == "ldap"
    assert settings.bind_password_vault == "rotate/ldap#bind"


def test_bind_password_comes_from_the_secret_source() -> None:
    settings, _ = parse(AD)
    assert settings is not None
    with pytest.raises(ConfigError, match="CORP_AD_BIND"):
        AD.build(settings, FakeSecrets({}))
    authority = AD.build(settings, FakeSecrets({"CORP_AD_BIND": Secret("pw-value")}))
    assert "pw-value" not in repr(authority)


@pytest.mark.parametrize(
    ("kind", "username", "expected"),
    [
        (LDAP, "", "is empty"),
        (LDAP, "   ", "is empty"),
        (LDAP, "bob\x00", "control character (or NUL) at position 4"),
        (LDAP, "bob\nroot", "control character"),
        (LDAP, " bob", "leading or trailing spaces"),
        (AD, "a" * 21, "21 characters long; a sAMAccountName has at most 20"),
        (AD, "EXAMPLE\\bob", "may not contain \\"),
        (AD, "bob*", "may not contain *"),
        (AD, 'a"b/c[d]', 'may not contain " / [ ]'),
        (AD, "bob.", "may not end with '.'"),
        # search-filter and DN metacharacters: escaped by the authority anyway, but refused in
        # the inventory, before any change
        (LDAP, "*)(uid=*", "contains ( ) * ="),
        (LDAP, "alice,ou=people,dc=example,dc=org", "contains , ="),
        (LDAP, "a*b", "search-filter or DN metacharacters"),
    ],
)
def test_unusable_login_names(kind: LdapType, username: str, expected: str) -> None:
    settings, _ = parse(kind)
    assert settings is not None
    problems = kind.check_account(settings, username, None, None)
    assert problems, username
    assert all(column == "username" for column, _ in problems)
    assert any(expected in message for _, message in problems), problems


@pytest.mark.parametrize(
    ("kind", "username"), [(LDAP, "alice"), (AD, "svc-fin_01"), (LDAP, "j.doe-2@x")]
)
def test_usable_login_names(kind: LdapType, username: str) -> None:
    settings, _ = parse(kind)
    assert settings is not None
    assert kind.check_account(settings, username, "EXAMPLE", None) == []


@pytest.mark.integration  # a socket of its own on loopback
def test_empty_password_is_never_sent() -> None:
    settings, _ = parse(LDAP, url=f"ldap://127.0.0.1:{free_port()}")
    assert settings is not None
    authority = LDAP.build(settings, FakeSecrets({"CORP_AD_BIND": Secret("x")}))

    async def run() -> None:
        # nothing listens: any attempt to reach the server would raise
        assert await authority.login(account("alice"), Secret("")) is False
        with pytest.raises(Rejected, match="empty password"):
            await authority.change(account("alice"), Secret(""))
        await authority.aclose()

    asyncio.run(run())
