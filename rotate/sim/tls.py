"""TLS for the simulators: a throw-away certificate authority and a loopback server cert."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class SimTLS:
    """The server context to serve with, and the CA certificate a client must trust."""

    server: ssl.SSLContext
    ca_file: Path


def make_tls(directory: Path) -> SimTLS:
    """A new CA (written to `<directory>/simulator-ca.pem`) and a cert for 127.0.0.1."""
    ca = trustme.CA(organization_name="rotate simulators")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server)
    directory.mkdir(parents=True, exist_ok=True)
    ca_file = directory / "simulator-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return SimTLS(server, ca_file)
