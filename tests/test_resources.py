"""What a large run holds: one TLS context per set of certificate files, whatever the number
of endpoints, and the C heap's free pages handed back after the inventory is parsed."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rotate.heap import release_free_memory
from rotate.sim.tls import make_tls
from rotate.vendors.base import EndpointSettings
from rotate.vendors.http import tls_context


def endpoint(
    name: str, ca_bundle: Path | None = None, *, insecure: bool = False
) -> EndpointSettings:
    return EndpointSettings(
        name=name,
        system="remotix",
        url=f"https://127.0.0.1:{8000 + len(name)}",
        ca_bundle=str(ca_bundle) if ca_bundle else None,
        insecure=insecure,
    )


def test_endpoints_with_the_same_files_share_one_context(tmp_path: Path) -> None:
    ca = make_tls(tmp_path / "one").ca_file
    other = make_tls(tmp_path / "two").ca_file

    first, second = tls_context(endpoint("a", ca)), tls_context(endpoint("bb", ca))
    assert first is second  # 20 endpoints, one CA store in memory (about 1 MB each)
    assert tls_context(endpoint("c", other)) is not first
    assert tls_context(endpoint("d")) is tls_context(endpoint("eee"))  # the system CAs
    assert tls_context(endpoint("d")) is not first
    assert tls_context(endpoint("f", ca, insecure=True)) is False


def test_a_replaced_ca_file_makes_a_new_context(tmp_path: Path) -> None:
    ca = make_tls(tmp_path / "one").ca_file
    before = tls_context(endpoint("a", ca))
    ca.write_bytes(make_tls(tmp_path / "two").ca_file.read_bytes())
    stat = ca.stat()
    os.utime(ca, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))

    after = tls_context(endpoint("a", ca))
    assert after is not before
    assert tls_context(endpoint("b", ca)) is after


def test_a_missing_ca_file_still_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        tls_context(endpoint("a", tmp_path / "absent.pem"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_free_heap_pages_are_returned_on_linux() -> None:
    assert release_free_memory() is True
