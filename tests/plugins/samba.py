"""Pytest plugin: a real Samba AD domain controller on loopback, provisioned once per session.

Recipe (Debian's samba-ad-dc, run as root):

1. `samba-tool domain provision` into a temp dir (`--server-role=dc --dns-backend=NONE
   --use-rfc2307`, realm EXAMPLE.NET, `-s` an empty smb.conf so the system one is not
   copied; `interfaces` = one loopback address, `bind interfaces only`, `server services =
   ldap`, pid/ncalrpc/winbindd dirs in the temp dir). No `--adminpass`: provision makes a
   random one (its log line is blanked afterwards).
2. With the database offline, Debian's python3-samba (SamDB, system session) sets the
   Administrator's password read from stdin -- never on a command line -- and the domain's
   minPwdAge to 0 (defaults kept: complexity on, min length 7, history 24).
3. smb.conf gets `old password allowed period = 0` (the old password stops working at once)
   and a certificate for the loopback address from a throw-away CA (trustme): Samba's own
   self-signed one names the host (DC1.example.net), not 127.0.0.1, so a client that checks
   host names could not use it.
4. `samba -F -M single -s smb.conf` (one process: stopped, frozen and killed by its pid);
   ready when an anonymous LDAPS read of the root DSE answers.

Samba's LDAP ports are fixed (389, 636, 3268, 3269): the server takes 127.0.0.1 when those
are free there, else another 127.0.0.x, so two sessions on one machine do not collide.

Missing Samba, or not root: the fixture skips with a note, or fails when `CI` is set.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ldap3
import pytest
import trustme
from ldap3.core.exceptions import LDAPException
from ldap3.utils.dn import escape_rdn

from rotate.models import Secret
from tests.plugins.slapd import binary, stop, strong_password

REALM = "EXAMPLE.NET"
DOMAIN = "EXAMPLE"
BASE_DN = "DC=example,DC=net"
USERS_DN = f"CN=Users,{BASE_DN}"
ADMIN_DN = f"CN=Administrator,{USERS_DN}"
LDAP_PORTS = (389, 636, 3268, 3269)
_FIXTURES = {"samba"}

# Run by Debian's own Python (python3-samba), with the Samba database offline.
_SET_ADMIN = """
import sys, ldb
from samba.auth import system_session
from samba.param import LoadParm
from samba.samdb import SamDB
lp = LoadParm()
lp.load(sys.argv[1])
db = SamDB(url=lp.private_path("sam.ldb"), session_info=system_session(), lp=lp)
db.setpassword("(sAMAccountName=Administrator)", sys.stdin.read(),
               force_change_at_next_login=False, username="Administrator")
m = ldb.Message()
m.dn = ldb.Dn(db, db.domain_dn())
m["minPwdAge"] = ldb.MessageElement("0", ldb.FLAG_MOD_REPLACE, "minPwdAge")
db.modify(m)
"""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _free(host: str) -> bool:
    for port in LDAP_PORTS:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def loopback_address() -> str:
    """127.0.0.1 if Samba's ports are free there, else another free 127.0.0.x."""
    candidates = ["127.0.0.1", *(f"127.0.0.{n}" for n in random.sample(range(2, 255), 40))]
    for host in candidates:
        if _free(host):
            return host
    raise RuntimeError(f"no loopback address has the ports {LDAP_PORTS} free")


@dataclass
class SambaDC:
    """A running Samba AD DC and what a test needs to talk to it."""

    workdir: Path
    host: str
    ca_file: Path
    admin_password: Secret = field(repr=False)
    proc: subprocess.Popen[bytes] | None = None
    base_dn: str = BASE_DN
    users_dn: str = USERS_DN
    admin_dn: str = ADMIN_DN
    realm: str = REALM
    domain: str = DOMAIN
    min_length: int = 7

    @property
    def url(self) -> str:
        return f"ldaps://{self.host}:636"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _server(self) -> ldap3.Server:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        tls = CheckedTls(context, self.host)
        return ldap3.Server(self.host, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE)

    def admin(self) -> ldap3.Connection:
        """A connection bound as Administrator over LDAPS."""
        return ldap3.Connection(
            self._server(),
            ADMIN_DN,
            self.admin_password.reveal(),
            auto_bind=True,
            raise_exceptions=True,
            receive_timeout=10,
        )

    def add_user(self, name: str, password: str, container: str = USERS_DN) -> str:
        """An enabled user (sAMAccountName `name`) with its password set through unicodePwd."""
        dn = f"CN={escape_rdn(name)},{container}"
        conn = self.admin()
        try:
            conn.add(
                dn,
                ["top", "person", "organizationalPerson", "user"],
                {
                    "sAMAccountName": name,
                    "userPrincipalName": f"{name}@{REALM.lower()}",
                    "userAccountControl": "512",  # a normal, enabled account
                    "unicodePwd": f'"{password}"'.encode("utf-16-le"),
                },
            )
        finally:
            conn.unbind()
        return dn

    def can_bind(self, dn: str, password: str) -> bool:
        conn = ldap3.Connection(self._server(), dn, password, raise_exceptions=False)
        try:
            return bool(conn.bind())
        finally:
            conn.unbind()

    def freeze(self) -> None:
        """SIGSTOP: connections are accepted by the kernel, nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def ready(self) -> bool:
        conn = ldap3.Connection(self._server(), receive_timeout=2, raise_exceptions=False)
        try:
            conn.open(read_server_info=False)
            return bool(conn.search("", "(objectClass=*)", search_scope=ldap3.BASE))
        except LDAPException:
            return False
        finally:
            conn.unbind()


class CheckedTls(ldap3.Tls):  # type: ignore[misc]
    """TLS checked by Python's ssl (chain and host name), not ldap3's match_hostname."""

    def __init__(self, context: ssl.SSLContext, host: str) -> None:
        super().__init__(validate=ssl.CERT_REQUIRED)
        self.context = context
        self.host = host

    def wrap_socket(self, connection: Any, do_handshake: bool = False) -> None:
        connection.socket = self.context.wrap_socket(
            connection.socket, do_handshake_on_connect=do_handshake, server_hostname=self.host
        )


def _run(args: list[str], log: Path, cwd: Path) -> None:
    with log.open("ab") as out:
        done = subprocess.run(args, stdout=out, stderr=subprocess.STDOUT, check=False, cwd=cwd)
    if done.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{args[0]} exited with {done.returncode}:\n{tail}")


def _blank_admin_password(log: Path) -> None:
    lines = log.read_text(errors="replace").splitlines(keepends=True)
    log.write_text(
        "".join("Admin password: (blanked)\n" if "Admin password" in ln else ln for ln in lines)
    )


def make_samba(workdir: Path) -> SambaDC:
    """Provision a domain into `workdir` and start its DC."""
    samba_tool = binary("samba-tool", "samba-ad-dc")
    samba = binary("samba", "samba-ad-dc")
    host = loopback_address()
    t = workdir
    t.mkdir(parents=True, exist_ok=True)
    (t / "empty.conf").write_text("")
    log = t / "provision.log"
    options = {
        "interfaces": f"{host}/8",
        "bind interfaces only": "yes",
        "server services": "ldap",
        "netbios name": "DC1",
        "pid directory": f"{t}/pid",
        "ncalrpc dir": f"{t}/ncalrpc",
        "winbindd socket directory": f"{t}/winbindd",
    }
    try:
        _run(
            [
                samba_tool,
                "domain",
                "provision",
                "-s",
                str(t / "empty.conf"),
                f"--targetdir={t}",
                f"--realm={REALM}",
                f"--domain={DOMAIN}",
                "--host-name=dc1",
                "--server-role=dc",
                "--dns-backend=NONE",
                "--use-rfc2307",
                *(f"--option={k}={v}" for k, v in options.items()),
            ],
            log,
            cwd=t,
        )
    finally:
        if log.exists():
            _blank_admin_password(log)
    smb_conf = t / "etc" / "smb.conf"
    private = t / "private"
    ca = trustme.CA()
    cert = ca.issue_cert(host, "localhost")
    ca.cert_pem.write_to_path(str(private / "test-ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(private / "test-cert.pem"))
    cert.private_key_pem.write_to_path(str(private / "test-key.pem"))
    (private / "test-key.pem").chmod(0o600)  # Samba refuses a key others may read
    extra = (
        "\told password allowed period = 0\n"
        f"\ttls keyfile = {private / 'test-key.pem'}\n"
        f"\ttls certfile = {private / 'test-cert.pem'}\n"
        f"\ttls cafile = {private / 'test-ca.pem'}\n"
    )
    conf = smb_conf.read_text()
    smb_conf.write_text(conf.replace("[global]\n", "[global]\n" + extra, 1))

    password = strong_password()
    with log.open("ab") as out:
        done = subprocess.run(
            ["/usr/bin/python3", "-c", _SET_ADMIN, str(smb_conf)],
            input=password.encode(),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(
            "setting the Administrator's password failed (python3-samba):\n"
            + log.read_text(errors="replace")[-3000:]
        )

    server = SambaDC(
        workdir=t, host=host, ca_file=private / "test-ca.pem", admin_password=Secret(password)
    )
    samba_log = t / "samba.log"
    with samba_log.open("ab") as out:
        server.proc = subprocess.Popen(
            [samba, "-F", "-M", "single", "-s", str(smb_conf)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=t,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while not server.ready():
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"samba exited with {server.proc.returncode}:\n"
                + samba_log.read_text(errors="replace")[-3000:]
            )
        if time.monotonic() > deadline:
            stop(server.proc)
            raise RuntimeError("samba did not answer on LDAPS within 60 s")
        time.sleep(0.1)
    return server


@pytest.fixture(scope="session")
def samba() -> Iterator[SambaDC]:
    """One Samba AD DC for the session (tests add users with names of their own)."""
    binary("samba", "samba-ad-dc")
    binary("samba-tool", "samba-ad-dc")
    if os.geteuid() != 0:
        note = "a Samba AD DC needs root"
        if os.environ.get("CI"):
            pytest.fail(f"{note}: CI runs as root")
        pytest.skip(note)
    with tempfile.TemporaryDirectory(prefix="rotate-samba-") as tmp:
        server = make_samba(Path(tmp) / "dc")
        try:
            yield server
        finally:
            if server.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    server.thaw()
                stop(server.proc, grace_s=10)
