"""The capability preflight: what a writing run needs of its Vault token, asked in one request.

One request to sys/capabilities-self (Vault's default policy allows it) asks for the token's
capabilities where the run writes: for a sample of the secret paths (one per top-level
folder), the current secret's data and metadata; the journal and stale-usage records, and
LIST on their folders (unfinished rotations and stale usages are found by listing); and the
run lease. Every gap is named with its path in one StoreUnavailable (exit 3) before any
change. A token that may not ask is let through with a warning: a denied call then fails its
own item, as it does with `[vault] preflight = false`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hvac
import hvac.exceptions as hvac_errors
import requests

from rotate.errors import StoreError, StoreUnavailable
from rotate.settings import VaultSettings
from rotate.stores.layout import check_path
from rotate.stores.vaulterrors import VaultErrors

log = logging.getLogger(__name__)

#: secret paths the preflight samples: one per top-level folder (say <prefix>/<endpoint>)
SAMPLES = 32
#: a record name the preflight asks about (journal records are `<run id>-<n>`)
RECORD_SAMPLE = "preflight-00001"

#: capabilities to read and write a KV v2 secret's data
_WRITE = ("read", "create", "update")
_METADATA = "its versions and custom_metadata"


@dataclass(frozen=True)
class Need:
    """Capabilities one API path must grant; "a|b" is satisfied by either."""

    path: str
    capabilities: tuple[str, ...]
    purpose: str

    def lacking(self, have: set[str]) -> str:
        """The missing capabilities, quoted ("'create' and 'update'"), or "" when none."""
        if "root" in have:
            return ""
        missing = [c for c in self.capabilities if not have.intersection(c.split("|"))]
        quoted = [" or ".join(repr(a) for a in c.split("|")) for c in missing]
        return " and ".join(quoted)


def needs(paths: Sequence[str], lease: str | None, settings: VaultSettings) -> list[Need]:
    """The capabilities a writing run on `paths` (and with run lease `lease`) needs."""
    m = settings.mount
    found: list[Need] = []
    for path in _samples(paths, settings.pending_root):
        found += [
            Need(f"{m}/data/{path}", _WRITE, "the current password"),
            Need(f"{m}/metadata/{path}", ("read", "patch|update"), _METADATA),
        ]
    if found:
        found += _folder(
            m,
            settings.pending_root,
            "staging candidates in journal records",
            "dropping a journal record once its candidates are settled",
            "finding unfinished rotations",
        )
        found += _folder(
            m,
            settings.stale_root,
            "recording usages that did not take their account's password",
            "dropping a stale-usage record once its usages are repaired",
            "finding stale usages to repair",
        )
    if lease:
        found += _record(m, lease, "the run lease", "releasing the run lease")
    return found


class Preflight:
    """Refuses a writing run before any change when its token may not do what it needs."""

    def __init__(
        self, settings: VaultSettings, client: Callable[[], hvac.Client], errors: VaultErrors
    ) -> None:
        self._settings = settings
        self._client = client
        self._errors = errors

    def check(self, paths: Sequence[str], lease: str | None) -> None:
        """StoreUnavailable naming every missing capability (see the module docstring)."""
        if not self._settings.preflight:
            return
        wanted = needs(paths, lease, self._settings)
        if not wanted:
            return
        granted = self._ask(wanted)
        if granted is not None:
            _refuse_gaps(wanted, granted)

    def _ask(self, wanted: Sequence[Need]) -> Mapping[str, Any] | None:
        """The capabilities Vault grants, by path; None (warned) when it would not say."""
        try:
            answer = self._client().adapter.post(
                "/v1/sys/capabilities-self", json={"paths": sorted({n.path for n in wanted})}
            )
        except (
            hvac_errors.Forbidden,
            hvac_errors.InvalidPath,
            hvac_errors.InvalidRequest,
            hvac_errors.UnsupportedOperation,
            hvac_errors.UnexpectedError,
        ) as exc:
            log.warning(
                "the token's capabilities were not checked before the run: Vault answered "
                "sys/capabilities-self with %s (give the token the default policy); "
                "a denied path fails its items one by one",
                self._errors.describe(exc),
            )
            return None
        except (requests.exceptions.RequestException, OSError) as exc:
            raise self._errors.unreachable(exc) from None
        except hvac_errors.VaultError as exc:
            raise StoreUnavailable(
                f"Vault at {self._settings.addr} failed the capability check: "
                f"{self._errors.describe(exc)}"
            ) from None
        body: dict[str, Any] = answer if isinstance(answer, dict) else {}
        data = body.get("data")
        granted: dict[str, Any] = data if isinstance(data, dict) else body
        if not any(isinstance(granted.get(n.path), list) for n in wanted):
            log.warning(
                "the token's capabilities were not checked before the run: Vault's answer to "
                "sys/capabilities-self names none of the paths asked about"
            )
            return None
        return granted


def _refuse_gaps(wanted: Sequence[Need], granted: Mapping[str, Any]) -> None:
    """StoreUnavailable naming each gap once, with the first path it is on."""
    missing: dict[tuple[str, str], list[str]] = {}  # (what, why) -> the paths
    for need in wanted:
        have = granted.get(need.path)
        if not isinstance(have, list):
            log.warning("Vault did not say what the token may do on %s", need.path)
            continue
        lacking = need.lacking({str(c) for c in have})
        if lacking:
            missing.setdefault((lacking, need.purpose), []).append(need.path)
    if missing:
        gaps = []
        for (lacking, purpose), where in missing.items():
            more = len(where) - 1
            like = f" and on {more} more path(s) like it" if more else ""
            gaps.append(f"{lacking} on {where[0]} ({purpose}){like}")
        raise StoreUnavailable(
            "the Vault token may not do what this run needs, so nothing was changed: it "
            "lacks " + "; ".join(gaps) + ". Grant these in its policy "
            "(see deploy/vault-policy.hcl)"
        )
    log.debug("the Vault token may do what this run needs (%d paths checked)", len(wanted))


def _samples(paths: Sequence[str], pending_root: str) -> list[str]:
    """One valid path per top-level folder, at most SAMPLES of them."""
    samples: dict[str, str] = {}
    for path in paths:
        try:
            check_path(path, pending_root)
        except StoreError:
            continue  # the item fails on its own, with this message
        samples.setdefault("/".join(path.split("/")[:2]), path)
        if len(samples) >= SAMPLES:
            break
    return list(samples.values())


def _record(mount: str, path: str, writing: str, dropping: str) -> list[Need]:
    """A bookkeeping record: written with check-and-set, deleted when done."""
    return [
        Need(f"{mount}/data/{path}", _WRITE, writing),
        Need(f"{mount}/metadata/{path}", ("delete",), dropping),
    ]


def _folder(mount: str, root: str, writing: str, dropping: str, finding: str) -> list[Need]:
    """A folder of bookkeeping records, found by listing it."""
    return [
        *_record(mount, f"{root}/{RECORD_SAMPLE}", writing, dropping),
        Need(f"{mount}/metadata/{root}/", ("list",), finding),
    ]
