"""What both the target and its access-link reader need of the Spark View API: the gateway
password's hash, the verdicts of its failure answers, and the shape of its list tables."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import httpx

from rotate.errors import RemoteError
from rotate.models import Secret
from rotate.vendors.http import ErrorText, error_text


def gateway_hash(password: Secret) -> Secret:
    """`gatewayPwd`: the lowercase hex MD5 of the gateway password; as secret as the password."""
    digest = hashlib.md5(password.reveal().encode("utf-8"), usedforsecurity=False)
    return Secret(digest.hexdigest())


def read_failure(response: httpx.Response) -> ErrorText | None:
    """Reads: a 500 with the gateway's `error:` body is its definite "no"; others may pass."""
    detail = error_text(response)
    if response.status_code == 500 and detail:
        return f"gateway error: {detail}", True
    return None


def write_failure(refusals: tuple[str, ...]) -> Callable[[httpx.Response], ErrorText | None]:
    """Writes: the gateway answers *every* failure as a 500 with an `error:` body, including
    one that comes after it applied the update (an internal error), so only a refusal (the
    endpoint's `write_refusals` words) is a definite "no"; any other failure leaves the
    outcome unknown and the candidate pending."""

    def classify(response: httpx.Response) -> ErrorText | None:
        detail = error_text(response)
        if response.status_code == 500 and detail:
            refused = any(word in detail.lower() for word in refusals)
            return f"gateway error: {detail}", refused
        return None

    return classify


def table_rows(table: Any, what: str) -> list[dict[str, Any]]:
    """The rows of a list-all answer (`{"cols": [{"name": ...}], "rows": [[...]]}`) as dicts."""
    try:
        names = [str(c["name"]) for c in table["cols"]]
        return [dict(zip(names, r, strict=False)) for r in table["rows"]]
    except (KeyError, TypeError):
        raise RemoteError(f"{what}: unexpected answer shape") from None


def text(value: Any) -> str:
    """A table cell as text (numbers stay as written; a missing cell is empty)."""
    return "" if value is None else str(value)
