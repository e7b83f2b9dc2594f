"""Pytest plugin: a real OpenSSH server (Debian's openssh-server) on loopback, once per session.

`/usr/sbin/sshd -D -e -f <tmp>/sshd_config` listens on 127.0.0.1 and 127.0.0.2 (two "hosts"
of one server, for the overall connection bound) on a free port, with a host key of its own,
password logins through PAM (`UsePAM yes`, so a password set with chpasswd is the one
checked) and root logins by key only: rotate's admin key, authorized in the temp dir. We run
as root: password logins and chpasswd need it.

The test users are real local Unix users (`useradd`, names `rt` + hex), removed at the end
(`userdel -r`); their passwords are set with chpasswd on stdin, never on a command line. A
password is checked on the host side against /etc/shadow (libcrypt's crypt), not through
SSH, so a test does not ask the code under test whether the code under test worked.

Commands a test can configure as the authority's `command` (all read `user:password` on
stdin, as chpasswd does, and hand it to chpasswd through the shell's builtins only):
- `record_command`: records its argv and the command line of every process on the host
  (/proc/*/cmdline), and how many such sessions run at once;
- `quality_command`: refuses passwords shorter than QUALITY_MIN_LENGTH with pam_pwquality's
  words (this machine's PAM has no quality module for root: see `quality_command`).

Missing sshd: the fixture skips with a note, or fails when `CI` is set (CI installs it).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.plugins.slapd import LOOPBACK, binary, free_port, stop, wait_listening

SECOND_LOOPBACK = "127.0.0.2"
QUALITY_MIN_LENGTH = 16
_FIXTURES = {"sshd"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that start sshd are integration tests."""
    for item in items:
        if _FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def _retry(argv: list[str], stdin: str | None = None, attempts: int = 50) -> None:
    """Run a user-database tool; another process holding /etc/passwd's lock is waited out."""
    for attempt in range(attempts):
        done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return
        if attempt == attempts - 1:
            raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()}")
        time.sleep(0.1)


def set_password(user: str, password: str) -> None:
    """chpasswd with the line on stdin (the password never in argv)."""
    _retry(["chpasswd"], stdin=f"{user}:{password}\n")


def _shadow_hash(user: str) -> str | None:
    for line in Path("/etc/shadow").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name == user:
            return rest.split(":", 1)[0]
    return None


_LIBCRYPT = ctypes.CDLL(ctypes.util.find_library("crypt") or "libcrypt.so.1")
_LIBCRYPT.crypt.restype = ctypes.c_char_p
_LIBCRYPT.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]


def password_is(user: str, password: str) -> bool:
    """Whether the host's /etc/shadow holds `password` for `user` (host side, not SSH)."""
    stored = _shadow_hash(user)
    if not stored or stored[0] in "!*":
        return False
    made = _LIBCRYPT.crypt(password.encode(), stored.encode())
    return made is not None and made.decode() == stored


def strong_password() -> str:
    """Long enough for the quality command, with a ':' (chpasswd carries it: split at the
    first one)."""
    return f"Rt:{secrets.token_hex(10)}-9Q"


@dataclass
class Sshd:
    """A running sshd and what a test needs to talk to it."""

    workdir: Path
    port: int
    key_file: Path  # rotate's admin key (root's authorized key)
    known_hosts: Path  # the host key, for 127.0.0.1 and 127.0.0.2 on this port
    host_public_key: str  # "ssh-ed25519 AAAA..."
    proc: subprocess.Popen[bytes] | None = None
    users: list[str] = field(default_factory=list)
    login_user: str = "root"

    @property
    def address(self) -> str:
        """The inventory's `host` value."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def second_address(self) -> str:
        return f"{SECOND_LOOPBACK}:{self.port}"

    @property
    def log(self) -> Path:
        return self.workdir / "sshd.log"

    def add_user(self, password: str, name: str | None = None) -> str:
        """A new local user with this password (and a shell, so it may log in)."""
        name = name or f"rt{secrets.token_hex(5)}"
        _retry(["useradd", "--create-home", "--shell", "/bin/sh", name])
        self.users.append(name)
        set_password(name, password)
        return name

    def password_is(self, user: str, password: str) -> bool:
        return password_is(user, password)

    def remove_users(self) -> None:
        while self.users:
            name = self.users.pop()
            with contextlib.suppress(RuntimeError):
                _retry(["userdel", "--remove", name], attempts=20)

    # -- commands for the authority's `command` ------------------------------------------

    def record_command(self, tag: str) -> tuple[str, Path]:
        """A command that records what the host saw, then runs chpasswd; its records dir."""
        records = self.workdir / "records" / tag
        (records / "active").mkdir(parents=True)
        script = self.workdir / "bin" / "record-chpasswd"
        if not script.exists():
            script.parent.mkdir(exist_ok=True)
            script.write_text(_RECORD_SCRIPT)
            script.chmod(0o755)
        return f"{script} {records}", records

    def quality_command(self) -> str:
        """A command that refuses passwords shorter than QUALITY_MIN_LENGTH (exit 1, with
        pam_pwquality's and chpasswd's words on stderr), else hands the line to chpasswd.

        A stand-in for a PAM quality check: this machine's PAM stack (/etc/pam.d/chpasswd ->
        common-password: pam_unix only) has no pam_pwquality or pam_cracklib, and pam_unix
        skips its own checks for root; changing the system's PAM config is not a test's to do.
        """
        script = self.workdir / "bin" / "quality-chpasswd"
        if not script.exists():
            script.parent.mkdir(exist_ok=True)
            script.write_text(_QUALITY_SCRIPT)
            script.chmod(0o755)
        return f"{script} {QUALITY_MIN_LENGTH}"

    # -- the server ----------------------------------------------------------------------

    def start(self) -> None:
        sshd = binary("sshd", "openssh-server")
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        config = self.workdir / "sshd_config"
        subprocess.run([sshd, "-t", "-f", str(config)], check=True, capture_output=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sshd, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                start_new_session=True,
            )
        wait_listening(self.proc, LOOPBACK, self.port, self.log)
        wait_listening(self.proc, SECOND_LOOPBACK, self.port, self.log)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)


_RECORD_SCRIPT = r"""#!/bin/sh
# rotate's `command` in the tests: records its own argv and the command line of every process
# on the host (chpasswd's included, while it runs), counts the sessions running at once, and
# hands stdin to chpasswd (held open a little, so chpasswd is seen running).
records="$1"
me="$records/$$"
touch "$records/active/$$"
ls "$records/active" | wc -l > "$me.seen"
snapshot() {
  for f in /proc/[0-9]*/cmdline; do tr '\000' ' ' < "$f" 2>/dev/null; echo; done
}
{
  printf 'argv:'; for a in "$0" "$@"; do printf ' %s' "$a"; done; printf '\n'
  snapshot
} > "$me.procs"
exec 3<&0  # an asynchronous list's stdin is /dev/null: the line goes in through fd 3
{ cat <&3; sleep 0.6; } | chpasswd &
chpasswd=$!
sleep 0.15
snapshot >> "$me.procs"
wait "$chpasswd"
rc=$?
rm -f "$records/active/$$"
exit $rc
"""

_QUALITY_SCRIPT = r"""#!/bin/sh
# reads "user:password" as chpasswd does; refuses a password shorter than $1 as
# pam_pwquality would, else hands the line to chpasswd (printf is a builtin: no argv)
IFS= read -r line || exit 1
user=${line%%:*}
password=${line#*:}
if [ "${#password}" -lt "$1" ]; then
  echo "BAD PASSWORD: The password is shorter than $1 characters" >&2
  echo "chpasswd: (line 1, user $user) password not changed" >&2
  exit 1
fi
printf '%s\n' "$line" | chpasswd
"""


def _config(workdir: Path, port: int) -> str:
    return f"""Port {port}
ListenAddress {LOOPBACK}
ListenAddress {SECOND_LOOPBACK}
HostKey {workdir}/host_ed25519
PidFile {workdir}/sshd.pid
AuthorizedKeysFile {workdir}/authorized/%u
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitEmptyPasswords no
UsePAM yes
PermitRootLogin prohibit-password
UseDNS no
PrintMotd no
MaxStartups 200
MaxSessions 50
MaxAuthTries 6
LogLevel VERBOSE
"""


def keygen(path: Path, comment: str = "rotate-test") -> str:
    """A new ed25519 key pair at `path` (no passphrase); its public line."""
    keygen_bin = binary("ssh-keygen", "openssh-client")
    subprocess.run(
        [keygen_bin, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    public = path.with_name(path.name + ".pub").read_text().split()
    return f"{public[0]} {public[1]}"


def known_hosts_line(public: str, port: int, *hosts: str) -> str:
    names = ",".join(f"[{h}]:{port}" for h in (hosts or (LOOPBACK, SECOND_LOOPBACK)))
    return f"{names} {public}\n"


def need_root() -> None:
    """sshd's PAM password logins, chpasswd and useradd need root: skip (or fail in CI)."""
    if os.geteuid() != 0:
        note = "the sshd tests run as root (PAM password logins, useradd, chpasswd)"
        if os.environ.get("CI"):
            pytest.fail(note)
        pytest.skip(note)


def make_sshd(workdir: Path) -> Sshd:
    """A new sshd in `workdir`: host key, admin key, config; started."""
    binary("sshd", "openssh-server")
    need_root()
    workdir.mkdir(parents=True, exist_ok=True)
    host_public = keygen(workdir / "host_ed25519", "rotate-test-host")
    admin_public = keygen(workdir / "admin_ed25519", "rotate-test-admin")
    authorized = workdir / "authorized"
    authorized.mkdir()
    (authorized / "root").write_text(admin_public + "\n")
    port = free_port()
    (workdir / "sshd_config").write_text(_config(workdir, port))
    known = workdir / "known_hosts"
    known.write_text(known_hosts_line(host_public, port))
    server = Sshd(
        workdir=workdir,
        port=port,
        key_file=workdir / "admin_ed25519",
        known_hosts=known,
        host_public_key=host_public,
    )
    server.start()
    return server


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """One sshd for the session (tests add users with names of their own)."""
    binary("sshd", "openssh-server")
    with tempfile.TemporaryDirectory(prefix="rotate-sshd-") as tmp:
        server = make_sshd(Path(tmp) / "sshd")
        try:
            yield server
        finally:
            server.stop()
            server.remove_users()
