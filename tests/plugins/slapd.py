"""Pytest plugin: a real OpenLDAP server (Debian's slapd) on loopback, once per session.

The directory `dc=example,dc=org` has people under `ou=people` and a default password policy
(ppolicy overlay, pwdMinLength 8, quality checks on) that refuses short passwords as
constraintViolation (19). rotate's admin is `cn=admin,dc=example,dc=org`, an ordinary entry
with ACL write access on `userPassword` -- *not* the rootdn: slapd's ppolicy skips its
quality checks for the rootdn, so a rootdn reset would take any password. There is no
rootdn at all (the entries are loaded with slapadd).

slapd listens on ldap:// (StartTLS offered) and ldaps://, with a certificate for 127.0.0.1
from a throw-away CA (trustme). No password is ever on a command line: the LDIF and the
client tools' `-y` files hold them, in the server's temp dir.

Missing slapd: the fixtures skip with a note, or fail when `CI` is set (CI installs it).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
import pytest
import trustme
from ldap3.utils.dn import escape_rdn

from rotate.models import Secret

LOOPBACK = "127.0.0.1"
BASE_DN = "dc=example,dc=org"
PEOPLE_DN = f"ou=people,{BASE_DN}"
STAFF_DN = f"ou=staff,{BASE_DN}"
ADMIN_DN = f"cn=admin,{BASE_DN}"
MIN_LENGTH = 8
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
_FIXTURES = {"slapd", "private_slapd"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start slapd are integration tests (`-m "not integration"` skips them)."""
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def binary(name: str, package: str) -> str:
    """The path of a server binary; skip (or fail in CI) when it is not installed."""
    found = shutil.which(name) or next(
        (str(p) for d in ("/usr/sbin", "/usr/bin") if (p := Path(d) / name).is_file()), None
    )
    if found is None:
        note = f"{name} is not installed (Debian package {package})"
        if os.environ.get("CI"):
            pytest.fail(f"{note}: .ci/run installs it in CI")
        pytest.skip(note)
    return found


def free_port(host: str = LOOPBACK) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def stop(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """TERM, then KILL: by the pid of the process this plugin started."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace_s)


def wait_listening(
    proc: subprocess.Popen[bytes], host: str, port: int, log: Path, timeout_s: float = 15.0
) -> None:
    """Poll until `host:port` accepts a connection; fail with the log if the server died."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"not listening on {host}:{port} after {timeout_s}s") from None
            time.sleep(0.05)


def strong_password() -> str:
    """A password every test directory takes (long, four character classes)."""
    return f"Rt-{secrets.token_hex(10)}-9Q"


@dataclass
class Slapd:
    """A running slapd and what a test needs to talk to it."""

    workdir: Path
    port: int  # ldap:// (StartTLS offered)
    tls_port: int  # ldaps://
    admin_password: Secret = field(repr=False)
    ca_file: Path
    proc: subprocess.Popen[bytes] | None = None
    host: str = LOOPBACK
    base_dn: str = BASE_DN
    people_dn: str = PEOPLE_DN
    admin_dn: str = ADMIN_DN
    min_length: int = MIN_LENGTH

    @property
    def url(self) -> str:
        return f"ldap://{self.host}:{self.port}"

    @property
    def ldaps_url(self) -> str:
        return f"ldaps://{self.host}:{self.tls_port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def admin(self) -> ldap3.Connection:
        """A connection bound as rotate's admin (plain LDAP on loopback)."""
        server = ldap3.Server(self.host, port=self.port, get_info=ldap3.NONE)
        return ldap3.Connection(
            server, ADMIN_DN, self.admin_password.reveal(), auto_bind=True, raise_exceptions=True
        )

    def add_user(self, uid: str, password: str, container: str | None = None) -> str:
        """A person under ou=people; its password is hashed by ppolicy_hash_cleartext."""
        dn = f"uid={escape_rdn(uid)},{container or PEOPLE_DN}"
        conn = self.admin()
        try:
            conn.add(
                dn,
                ["inetOrgPerson"],
                {"uid": uid, "cn": uid, "sn": uid, "userPassword": password},
            )
        finally:
            conn.unbind()
        return dn

    def can_bind(self, dn: str, password: str) -> bool:
        server = ldap3.Server(self.host, port=self.port, get_info=ldap3.NONE)
        conn = ldap3.Connection(server, dn, password, raise_exceptions=False)
        try:
            return bool(conn.bind())
        finally:
            conn.unbind()

    def start(self) -> None:
        """Start slapd (again, on the same ports and data) and wait until it listens."""
        slapd = binary("slapd", "slapd")
        log = self.workdir / "slapd.log"
        urls = f"ldap://{self.host}:{self.port}/ ldaps://{self.host}:{self.tls_port}/"
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [slapd, "-f", str(self.workdir / "slapd.conf"), "-h", urls, "-d", "0"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        wait_listening(self.proc, self.host, self.port, log)
        wait_listening(self.proc, self.host, self.tls_port, log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def kill(self) -> None:
        """SIGKILL: the server dies at once, mid-request."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing is answered."""
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


def _config(workdir: Path) -> str:
    schema = "\n".join(f"include /etc/ldap/schema/{s}.schema" for s in SCHEMAS)
    return f"""{schema}
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload ppolicy
pidfile {workdir}/slapd.pid
argsfile {workdir}/slapd.args
TLSCACertificateFile {workdir}/ca.pem
TLSCertificateFile {workdir}/cert.pem
TLSCertificateKeyFile {workdir}/key.pem

database mdb
suffix "{BASE_DN}"
directory {workdir}/db
maxsize 67108864
overlay ppolicy
ppolicy_default "cn=default,ou=policies,{BASE_DN}"
ppolicy_hash_cleartext
access to attrs=userPassword
  by dn.exact="{ADMIN_DN}" write
  by self write
  by anonymous auth
  by * none
access to *
  by dn.exact="{ADMIN_DN}" write
  by users read
  by anonymous auth
"""


def _ldif(admin_password: str) -> str:
    return f"""dn: {BASE_DN}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: {PEOPLE_DN}
objectClass: organizationalUnit
ou: people

dn: ou=staff,{BASE_DN}
objectClass: organizationalUnit
ou: staff

dn: ou=policies,{BASE_DN}
objectClass: organizationalUnit
ou: policies

dn: cn=default,ou=policies,{BASE_DN}
objectClass: applicationProcess
objectClass: pwdPolicy
cn: default
pwdAttribute: userPassword
pwdMinLength: {MIN_LENGTH}
pwdCheckQuality: 2

dn: {ADMIN_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: admin
description: rotate's admin: writes userPassword (not the rootdn, which ppolicy exempts)
userPassword: {admin_password}
"""


def make_slapd(workdir: Path) -> Slapd:
    """A new slapd in `workdir`: config, TLS files, data loaded; started."""
    slapd_bin = binary("slapd", "slapd")
    slapadd = str(Path(slapd_bin).with_name("slapadd"))
    if not Path(slapadd).is_file():
        slapadd = binary("slapadd", "slapd")
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "db").mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert(LOOPBACK, "localhost")
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    cert.cert_chain_pems[0].write_to_path(str(workdir / "cert.pem"))
    cert.private_key_pem.write_to_path(str(workdir / "key.pem"))
    (workdir / "key.pem").chmod(0o600)
    password = strong_password()
    (workdir / "slapd.conf").write_text(_config(workdir))
    ldif = workdir / "init.ldif"
    ldif.write_text(_ldif(password))
    ldif.chmod(0o600)
    secret_file = workdir / "admin.pw"  # for ldap-utils' -y
    secret_file.write_text(password)
    secret_file.chmod(0o600)
    subprocess.run(
        [slapadd, "-q", "-f", str(workdir / "slapd.conf"), "-l", str(ldif)],
        check=True,
        capture_output=True,
        cwd=workdir,
    )
    server = Slapd(
        workdir=workdir,
        port=free_port(),
        tls_port=free_port(),
        admin_password=Secret(password),
        ca_file=workdir / "ca.pem",
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def slapd() -> Iterator[Slapd]:
    """One slapd for the session (tests add users with names of their own)."""
    binary("slapd", "slapd")
    with tempfile.TemporaryDirectory(prefix="rotate-slapd-") as tmp:
        server = make_slapd(Path(tmp) / "slapd")
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def private_slapd() -> Iterator[Slapd]:
    """A slapd of the test's own, to kill or restart (started in well under a second)."""
    binary("slapd", "slapd")
    with tempfile.TemporaryDirectory(prefix="rotate-slapd-") as tmp:
        server = make_slapd(Path(tmp) / "slapd")
        try:
            yield server
        finally:
            if server.proc is not None and server.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    server.thaw()
            server.stop()
