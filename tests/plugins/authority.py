"""Pytest plugin: what the authority contract suites share (tests/test_authority_ldap.py and
tests/test_authority_ssh.py): closing the authorities a test opens, and looking for secrets in
what an error would show."""

from __future__ import annotations

import traceback
from collections.abc import AsyncIterator, Callable

import pytest

from rotate.authorities.base import Authority


@pytest.fixture
async def closing() -> AsyncIterator[Callable[[Authority], None]]:
    """Authorities a test opens, closed at its end."""
    opened: list[Authority] = []
    yield opened.append
    for a in opened:
        await a.aclose()


def leaks(secret_values: list[str], *texts: str) -> list[str]:
    """The secrets found in any of `texts`."""
    return [s for s in secret_values for t in texts if s and s in t]


def exception_text(exc: BaseException) -> str:
    """Everything a log line with a traceback would show of `exc`."""
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)
