"""The account level of the reports: the accounts table and figures on every page, the
authorities beside the endpoints, copy-only accounts flagged, stale and drift shown as
needing attention, the accounts CSV, the JSON accounts, compliance counts and escaping."""

from __future__ import annotations

import csv
import io
import json
import re
import tracemalloc
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from markupsafe import escape

from rotate.models import (
    NO_AUTHORITY,
    Account,
    AccountResult,
    AuthorityProbe,
    Drift,
    ItemResult,
    Row,
    RunRecord,
    Status,
)
from rotate.report import (
    csv_report,
    html_report,
    json_record,
    json_report,
    render_html,
    stats,
    write_json,
    write_reports,
)
from tests.test_report import (
    HOSTILE,
    PLANTED,
    STARTED,
    figures_of,
    item,
    record,
    row,
    sample_compliance,
    sample_plan,
    sample_run,
    table_body,
)

#: the authorities of the samples: name -> type
TYPES = {"corp-ad": "ad", "corp-ldap": "ldap", NO_AUTHORITY: "none"}


def account_of(
    name: str,
    authority: str,
    usages: Sequence[Row],
    *,
    username: str = "administrator",
    domain: str | None = None,
    host: str | None = None,
) -> Account:
    return Account(
        name=name,
        authority=authority,
        username=username,
        domain=domain,
        host=host,
        vault_path=f"rotate/accounts/{name}",
        policy="default",
        max_age_days=90,
        usages=tuple(usages),
    )


def result_of(account: Account, status: Status, **kw: object) -> AccountResult:
    fields: dict[str, object] = {
        "authority_type": TYPES.get(account.authority, "ssh"),
        "vault_version": 4,
        "last_changed": STARTED,
    }
    fields.update(kw)
    return AccountResult(account, status=status, **fields)  # type: ignore[arg-type]


def with_accounts(
    rec: RunRecord,
    groups: Sequence[tuple[str, str, Sequence[str], Status, dict[str, object]]],
    probes: tuple[AuthorityProbe, ...] = (),
) -> RunRecord:
    """`rec` with its items grouped into accounts: (name, authority, targets, status, result
    fields) each; the items' rows name their account and authority, as the inventory's do."""
    by_target = {i.row.target: i for i in rec.items}
    items: dict[str, ItemResult] = {}
    results = []
    for name, authority, targets, status, kw in groups:
        usages = []
        for target in targets:
            it = by_target[target]
            r = replace(it.row, account=name, authority=authority)
            items[target] = replace(it, row=r)
            usages.append(r)
        results.append(result_of(account_of(name, authority, usages), status, **kw))
    new_items = tuple(items.get(i.row.target, i) for i in rec.items)
    return replace(rec, items=new_items, accounts=tuple(results), authority_probes=probes)


#: a copy-only account whose name carries the planted script (the browser checks it)
KIOSK = f"kiosk{PLANTED}"


def sample_run_accounts() -> RunRecord:
    """`sample_run`'s 18 items as the usages of 5 accounts: one rotated (9 usages), one in
    doubt, one copy-only failed (hostile name), one rotated with a stale usage, one not
    attempted; authority probes for two authorities and one unused."""
    rec = sample_run()
    conn6 = next(i.row.target for i in rec.items if i.row.target.startswith("conn-6"))
    return with_accounts(
        rec,
        [
            (
                "corp-admin",
                "corp-ad",
                [f"conn-{n}" for n in range(1, 6)] + [f"mac-{n}" for n in range(1, 5)],
                Status.ROTATED,
                {"login_verified": True, "in_sync": 9, "vault_version": 5},
            ),
            ("cloud-vnc", "corp-ldap", ["mac-5"], Status.IN_DOUBT, {"error": "timed out"}),
            (
                KIOSK,
                NO_AUTHORITY,
                [conn6, "conn-7"],
                Status.FAILED,
                {"error": "HTTP 422 from target: password rejected"},
            ),
            (
                "srv-admin",
                "corp-ad",
                ["srv-1", "srv-2", "srv-3", "srv-4"],
                Status.ROTATED,
                {"login_verified": True, "in_sync": 3, "stale": 1},
            ),
            (
                "edge-admin",
                "corp-ldap",
                ["edge-1", "edge-2"],
                Status.NOT_ATTEMPTED,
                {"reason": "no endpoint of its usages passed its probe", "last_changed": None},
            ),
        ],
        probes=(
            AuthorityProbe("corp-ad", "ad", True, "bound as CN=rotate-svc"),
            AuthorityProbe("corp-ldap", "ldap", True, "bound as cn=admin"),
            AuthorityProbe("branch-hosts", "ssh", False, f"connection refused {HOSTILE}"),
        ),
    )


def sample_plan_accounts() -> RunRecord:
    """`sample_plan`'s 16 items as 4 accounts: due, drift, copy-only not due, not attempted."""
    return with_accounts(
        sample_plan(),
        [
            (
                "cloud-admin",
                "corp-ad",
                ["new-1", "new-2", "new-3", *_targets(sample_plan(), "half-1")],
                Status.DUE,
                {"login_verified": True},
            ),
            (
                "mac-admin",
                "corp-ldap",
                [f"old-{n}" for n in range(1, 5)],
                Status.DRIFT,
                {
                    "login_verified": False,
                    "error": "Vault's current password does not log in at authority corp-ldap",
                },
            ),
            ("gw-admin", NO_AUTHORITY, [f"srv-{n}" for n in range(1, 7)], Status.NOT_DUE, {}),
            ("edge-admin", "corp-ad", ["edge-1", "edge-2"], Status.NOT_ATTEMPTED, {}),
        ],
        probes=(
            AuthorityProbe("corp-ad", "ad", True, "bound"),
            AuthorityProbe("corp-ldap", "ldap", True, "bound"),
        ),
    )


def sample_compliance_accounts() -> RunRecord:
    """`sample_compliance`'s 20 credentials as 3 accounts: overdue, last attempt failed and a
    copy-only one with 2 of its 8 usages stale."""
    rec = sample_compliance()
    cred19 = next(i for i in rec.items if i.row.target == "cred-19")
    cred20 = next(i for i in rec.items if i.row.target == "cred-20")
    stale = "does not hold the account's current password (holds v3); the next run repairs it"
    items = tuple(
        replace(i, status=Status.STALE, reason=stale) if i in (cred19, cred20) else i
        for i in rec.items
    )
    return with_accounts(
        replace(rec, items=items),
        [
            ("office", "corp-ad", [f"cred-{n}" for n in range(1, 8)], Status.OVERDUE, {}),
            (
                "cloud",
                "corp-ldap",
                [f"cred-{n}" for n in range(8, 13)],
                Status.LAST_ATTEMPT_FAILED,
                {},
            ),
            (
                "gw",
                NO_AUTHORITY,
                [f"cred-{n}" for n in range(13, 21)],
                Status.STALE,
                {"in_sync": 6, "stale": 2},
            ),
        ],
    )


def _targets(rec: RunRecord, prefix: str) -> list[str]:
    return [i.row.target for i in rec.items if i.row.target.startswith(prefix)]


def accounts_table(html: str) -> str:
    return html.split('<table id="accounts"', 1)[1].split("</table>", 1)[0]


def account_rows(html: str) -> list[str]:
    """The accounts table's rows, each as its HTML."""
    body = accounts_table(html).split("<tbody>", 1)[1]
    return re.findall(r"<tr data-status=.*?</tr>", body, re.S)


def account_names(html: str) -> list[str]:
    return [re.findall(r'<td class="mono wrap">([^<]*)', r)[0] for r in account_rows(html)]


def account_figures(html: str) -> dict[str, tuple[int, str | None]]:
    found = re.findall(
        r'<li class="figure acct f-[a-z_]+[^"]*" data-key="([a-z_]+)"><span class="n">(\d+)'
        r'</span> <span class="what">[^<]+</span>(?: <span class="share">([\d.]+ %)</span>)?',
        html,
    )
    return {key: (int(n), share or None) for key, n, share in found}


def cells(tr: str) -> list[str]:
    return re.findall(r"<td[^>]*>(.*?)</td>", tr, re.S)


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


# --- the accounts table --------------------------------------------------------------------


def test_run_page_lists_every_account_attention_first_with_its_usages() -> None:
    rec = sample_run_accounts()
    html = render_html(rec)
    assert '<h2 id="accounts-h">Accounts</h2>' in html
    rows = account_rows(html)
    assert len(rows) == len(rec.accounts) == 5
    # failed, in doubt, stale (rotated but a usage did not take it), not attempted; then fine
    assert account_names(html) == [
        str(escape(KIOSK)),
        "cloud-vnc",
        "srv-admin",
        "edge-admin",
        "corp-admin",
    ]
    statuses = [re.search(r'data-status="([a-z_]+)"', r).group(1) for r in rows]  # type: ignore[union-attr]
    assert statuses == ["failed", "in_doubt", "rotated", "not_attempted", "rotated"]
    corp = cells(rows[4])
    assert corp[1] == 'corp-ad <span class="muted">ad</span>'
    assert corp[2] == "administrator"
    assert 'class="badge s-rotated">rotated</span>' in corp[3]
    assert "2025-03-04 05:06:07 UTC" in corp[4]
    assert "yes" in corp[5]
    assert corp[6:9] == ["9", "0", "9"]  # in sync, stale, usages
    assert corp[9] == 'rotate/accounts/corp-admin <span class="ver">v5</span>'
    srv = cells(rows[2])
    assert srv[6:9] == ["3", "1", "4"]
    assert 'class="num stale-n"' in rows[2]
    assert cells(rows[1])[5] == "—"  # not checked
    assert "timed out" in cells(rows[1])[10]
    assert cells(rows[3])[4] == "—"  # never changed


def test_account_figures_stand_beside_the_usage_figures() -> None:
    html = render_html(sample_run_accounts())
    assert figures_of(html)["total"] == (18, None)  # the usages, as before
    assert 'Usages <span class="muted">(stored copies' in html
    assert account_figures(html) == {
        "accounts": (5, None),
        "rotated": (2, None),
        "failed": (1, None),
        "in_doubt": (1, None),
        "stale": (0, None),
        "not_attempted": (1, None),
        "skipped": (0, None),
        "copy_only": (1, None),
        "usages_in_sync": (12, None),
        "usages_stale": (1, None),
        "login_verified": (2, None),
        "login_failed": (0, None),
    }


def test_copy_only_account_is_flagged_loudly_on_every_page() -> None:
    for rec in (sample_run_accounts(), sample_plan_accounts(), sample_compliance_accounts()):
        html = render_html(rec)
        note = html.split('<p class="copy-only-note" role="note">', 1)[1].split("</p>", 1)[0]
        assert "copy-only (authority = none): the host account is NOT changed." in note
        assert f"1 of the {len(rec.accounts)} accounts is copy-only" in note
        copy_rows = [r for r in account_rows(html) if "data-copy-only" in r]
        assert len(copy_rows) == 1
        assert (
            '<span class="badge s-copy_only">copy-only: host account not changed</span>'
            in copy_rows[0]
        )
        assert "copy-only" not in "".join(r for r in account_rows(html) if r not in copy_rows)
        # its usages in the item table say so too, under the username
        assert '<span class="copy-only">copy-only</span>' in table_body(html)
        assert account_figures(html)["copy_only"] == (1, None)
        # and at the top of the page, beside whether changes were made
        lede = html.split('<p class="lede">', 1)[1].split("</p>", 1)[0]
        assert "1 copy-only account: host account NOT changed" in lede
    assert 'class="pill pill-copy"' not in render_html(sample_run())


def test_items_name_their_account_and_authority() -> None:
    body = table_body(render_html(sample_run_accounts()))
    line = body.split("srv-4 ", 1)[1].split("</tr>", 1)[0]
    assert '<span class="acct" title="account · authority">srv-admin · corp-ad</span>' in line
    # a row that names neither account nor authority is an account of its own: nothing added
    plain = render_html(record([item(row("solo"), Status.ROTATED)]))
    assert 'class="acct"' not in plain
    assert 'id="accounts-h"' not in plain  # no accounts in the record: no section


def test_authorities_are_shown_beside_the_endpoints() -> None:
    html = render_html(sample_run_accounts())
    section = html.split('<h2 id="authorities-h">Authorities</h2>', 1)[1].split("</section>", 1)[0]
    assert html.index('id="endpoints-h"') < html.index('id="authorities-h"')
    lines = re.findall(r"<tr[^>]*>\s*<th scope=\"row\">(.*?)</th>(.*?)</tr>", section, re.S)
    names = [re.sub(r"<.*", "", n).strip() for n, _ in lines]
    assert names == ["branch-hosts", "corp-ad", "corp-ldap", "none"]
    by_name = dict(zip(names, (c for _, c in lines), strict=True))
    assert "login failed" in by_name["branch-hosts"]
    assert "connection refused &lt;script&gt;alert(1)&lt;/script&gt;" in by_name["branch-hosts"]
    assert "logged in" in by_name["corp-ad"]
    assert "copy-only: host account not changed" in by_name["none"]
    # accounts, usages, needing attention
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', by_name["corp-ad"]) == ["2", "13", "1"]
    assert re.findall(r'<td class="num[^"]*">(\d+)</td>', by_name["branch-hosts"]) == [
        "0",
        "0",
        "0",
    ]


def test_stale_and_drift_have_badges_colours_and_need_attention() -> None:
    html = render_html(sample_plan_accounts())
    assert account_names(html) == ["mac-admin", "edge-admin", "cloud-admin", "gw-admin"]
    drift = account_rows(html)[0]
    assert '<span class="badge s-drift">drift</span>' in drift
    assert '<span class="badge s-failed">no</span>' in drift  # login verified: no
    css = html.split("<style>", 1)[1].split("</style>", 1)[0]
    for status in ("stale", "drift", "repaired", "in_sync"):
        assert f".s-{status}" in css
        assert f".fill-{status}" in css
        assert f"--c-{status}:" in css
    for status in (Status.STALE, Status.DRIFT):
        assert html_report.needs_attention(item(row("x"), status))
        assert stats.account_attention(result_of(account_of("a", "corp-ad", []), status))
    for status in (Status.REPAIRED, Status.IN_SYNC):
        assert not html_report.needs_attention(item(row("x"), status))
    # in the item table, drift and stale come before not attempted, after in doubt
    rank = {s: html_report.rows.RANK[s] for s in (Status.IN_DOUBT, Status.NOT_ATTEMPTED)}
    assert rank[Status.IN_DOUBT] < html_report.rows.RANK[Status.DRIFT] < rank[Status.NOT_ATTEMPTED]
    assert rank[Status.IN_DOUBT] < html_report.rows.RANK[Status.STALE] < rank[Status.NOT_ATTEMPTED]


def test_a_run_with_stale_and_drift_items_lists_them_first() -> None:
    items = [
        item(row("a-ok", line=2), Status.ROTATED),
        item(row("b-stale", line=3), Status.STALE, error="did not take the new password"),
        item(row("c-repaired", line=4), Status.REPAIRED),
        item(row("d-drift", line=5), Status.DRIFT),
        item(row("e-failed", line=6), Status.FAILED),
    ]
    html = render_html(record(items))
    order = re.findall(r'data-status="([a-z_]+)" data-endpoint', table_body(html))
    # failures first; then, needing no attention, by endpoint and target
    assert order == ["failed", "drift", "stale", "rotated", "repaired"]
    assert '<span class="badge s-stale">stale</span>' in html
    figures = figures_of(html)
    assert figures["stale"] == (1, None)
    assert figures["drift"] == (1, None)
    assert figures["repaired"] == (1, None)


# --- CSV ---------------------------------------------------------------------------------


def test_accounts_csv_is_written_beside_the_items_csv(tmp_path: Path) -> None:
    rec = sample_run_accounts()
    paths = write_reports(rec, tmp_path)
    assert paths.accounts_csv.name == "run-20250304T050607Z-ru12-accounts.csv"
    rows = read_csv(paths.accounts_csv.read_text("utf-8"))
    assert rows[0] == list(csv_report.ACCOUNT_COLUMNS)
    assert set(csv_report.ACCOUNT_COLUMNS) == set(rec.accounts[0].as_record())
    assert [r[0] for r in rows[1:]] == [a.account.name for a in rec.accounts]
    by_name = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert by_name[KIOSK]["changes_host_account"] == "false"
    assert by_name[KIOSK]["authority_type"] == "none"
    assert by_name["corp-admin"]["login_verified"] == "true"
    assert by_name["corp-admin"]["usages"] == "9"
    assert by_name["srv-admin"]["stale"] == "1"
    assert by_name["edge-admin"]["last_changed"] == ""
    # the items CSV carries each usage's account, authority and host
    items = read_csv(paths.csv.read_text("utf-8"))
    header = items[0]
    assert {"account", "authority", "host"} <= set(header)
    srv4 = next(dict(zip(header, r, strict=True)) for r in items[1:] if r[2] == "srv-4")
    assert (srv4["account"], srv4["authority"], srv4["host"]) == ("srv-admin", "corp-ad", "")
    # the page points to it
    assert f"<code>{paths.accounts_csv.name}</code>" in paths.html.read_text("utf-8")


@pytest.mark.parametrize(
    "hostile", ["=cmd|' /C calc'!A0", "+SUM(A1)", "-2+3", "@SUM(A1)", "\uff1dcmd", "\tx"]
)
def test_accounts_csv_neutralises_formula_cells(hostile: str) -> None:
    r = replace(row("t"), account=hostile, authority="corp-ad", host=hostile)
    acct = replace(
        account_of(hostile, "corp-ad", [r], username=hostile, domain=hostile), host=hostile
    )
    rec = replace(
        record([item(r, Status.FAILED)]),
        accounts=(result_of(acct, Status.FAILED, reason=hostile, error=hostile),),
    )
    rows = read_csv(csv_report.dumps_accounts(rec))
    line = dict(zip(rows[0], rows[1], strict=True))
    for column in ("account", "username", "domain", "host", "reason", "error"):
        assert line[column] == "'" + hostile, column
    assert line["vault_path"] == f"rotate/accounts/{hostile}"  # starts with a letter: as is
    items = read_csv(csv_report.dumps(rec))
    item_line = dict(zip(items[0], items[1], strict=True))
    assert item_line["account"] == item_line["host"] == "'" + hostile


# --- JSON --------------------------------------------------------------------------------


def test_json_has_every_account_and_the_accounts_summary(tmp_path: Path) -> None:
    rec = sample_run_accounts()
    data = json_record(rec)
    assert data["accounts"] == [a.as_record() for a in rec.accounts]
    assert list(data)[-2:] == ["accounts", "items"]
    assert data["accounts_summary"] == {
        "total": 5,
        "rotated": 2,
        "in_doubt": 1,
        "failed": 1,
        "not_attempted": 1,
        "copy_only": 1,
        "usages": 18,
        "usages_in_sync": 12,
        "usages_stale": 1,
        "login_verified": 2,
        "login_failed": 0,
    }
    assert data["authorities"] == [
        {"authority": p.name, "type": p.type, "ok": p.ok, "detail": p.detail}
        for p in rec.authority_probes
    ]
    kiosk = next(a for a in data["accounts"] if a["account"] == KIOSK)  # type: ignore[union-attr]
    assert kiosk["changes_host_account"] is False
    assert kiosk["authority"] == "none"
    # streamed: exactly the record as one dump, accounts written one at a time
    path = write_json(rec, tmp_path / "r.json")
    assert path.read_text("utf-8") == json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    for item_record in data["items"]:  # type: ignore[union-attr]
        assert {"account", "authority", "host"} <= set(item_record)


def test_json_of_a_record_without_accounts() -> None:
    rec = record([item(row("a"), Status.ROTATED)])
    text = json_report.dumps(rec)
    assert text == json.dumps(json_record(rec), indent=2, ensure_ascii=False) + "\n"
    data = json.loads(text)
    assert data["accounts"] == []
    assert data["accounts_summary"]["total"] == 0
    assert data["authorities"] == []


# --- compliance ----------------------------------------------------------------------------


def test_compliance_counts_accounts_and_usages_with_percentages() -> None:
    rec = sample_compliance_accounts()
    html = render_html(rec)
    usages = figures_of(html)
    assert usages["total"] == (20, None)
    assert usages["stale"] == (2, "10.0 %")
    assert account_figures(html) == {
        "accounts": (3, None),
        "compliant": (0, "0.0 %"),
        "overdue": (1, "33.3 %"),
        "never_rotated": (0, "0.0 %"),
        "last_attempt_failed": (1, "33.3 %"),
        "stale": (1, "33.3 %"),
        "copy_only": (1, None),
        "usages_in_sync": (6, None),
        "usages_stale": (2, None),
    }
    data = json_record(rec)
    assert data["account_percentages"] == {
        "compliant": 0.0,
        "overdue": 33.33,
        "never_rotated": 0.0,
        "last_attempt_failed": 33.33,
        "stale": 33.33,
    }
    assert data["percentages"]["stale"] == 10.0  # type: ignore[index]
    assert data["accounts_summary"]["usages_stale"] == 2  # type: ignore[index]
    assert data["stale_usages"] == [
        {"usage": "gw1/server/cred-19/RDP", "account": "gw"},
        {"usage": "gw1/server/cred-20/RDP", "account": "gw"},
    ]


def test_compliance_lists_stale_usages_and_words_drift_by_account() -> None:
    html = render_html(sample_compliance_accounts())
    stale = html.split('id="stale-h"', 1)[1].split("</section>", 1)[0]
    assert '<span class="count-pill bad">2</span>' in stale
    listed = re.findall(r"<tr><td class=\"mono wrap\">([^ ]+) ", stale)
    assert listed == ["gw1/server/cred-19/RDP", "gw1/server/cred-20/RDP"]
    assert "holds v3" in stale
    drift = html.split('id="drift-h"', 1)[1].split("</section>", 1)[0]
    assert "Usages whose account has no secret in Vault" in drift
    assert "Secrets under the prefix that no account uses" in drift
    clean = render_html(replace(sample_compliance_accounts(), drift=Drift()))
    assert "every secret under the prefix belongs to an account" in clean
    assert "No stale usage" in render_html(sample_compliance_accounts_without_stale())


def sample_compliance_accounts_without_stale() -> RunRecord:
    rec = sample_compliance_accounts()
    items = tuple(
        replace(i, status=Status.COMPLIANT) if i.status is Status.STALE else i for i in rec.items
    )
    return replace(rec, items=items)


def test_compliance_stale_list_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_report, "MAX_STALE_LISTED", 1)
    html = render_html(sample_compliance_accounts())
    stale = html.split('id="stale-h"', 1)[1].split("</section>", 1)[0]
    assert stale.count("<tr><td") == 1
    assert "and 1 more, listed in the CSV and JSON reports." in stale


# --- escaping ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["run", "plan", "report"])
def test_hostile_account_values_are_escaped(mode: str) -> None:
    """Inventory text (account, authority, username, domain, host) and remote text (reasons,
    errors, probe details) are escaped in every cell and attribute, stale list included."""
    authority = f'{HOSTILE}" onmouseover="alert(1)'
    r = replace(
        row(f"t{HOSTILE}", domain=HOSTILE), account=HOSTILE, authority=authority, host=HOSTILE
    )
    status = {"run": Status.FAILED, "plan": Status.DRIFT, "report": Status.STALE}[mode]
    acct = account_of(HOSTILE, authority, [r], username=HOSTILE, domain=HOSTILE, host=HOSTILE)
    rec = replace(
        record([item(r, status, reason=HOSTILE, error=HOSTILE)], mode=mode),
        accounts=(result_of(acct, status, authority_type=HOSTILE, reason=HOSTILE, error=PLANTED),),
        authority_probes=(AuthorityProbe(authority, HOSTILE, False, PLANTED),),
    )
    html = render_html(rec)
    assert HOSTILE not in html
    assert PLANTED not in html
    assert 'onmouseover="alert' not in html
    assert html.count("<script>") == 1  # the page's own
    table = accounts_table(html)
    assert table.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6
    assert 'data-authority="&lt;script&gt;alert(1)&lt;/script&gt;&#34; onmouseover=' in table
    section = html.split('id="authorities-h"', 1)[1].split("</section>", 1)[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    if mode == "report":
        stale = html.split('id="stale-h"', 1)[1].split("</section>", 1)[0]
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in stale


# --- large records -----------------------------------------------------------------------


def many_accounts(n: int, n_bad: int) -> RunRecord:
    """`n` accounts of one usage each; every `n // n_bad`-th one failed (the rest rotated)."""
    items = []
    results = []
    step = n // n_bad
    for k in range(n):
        bad = k % step == step - 1 and k // step < n_bad
        r = replace(
            row(f"h-{k}", line=k + 2, endpoint=("e1", "e2")[k % 2]),
            account=f"acct-{k}",
            authority="corp-ad",
        )
        status = Status.FAILED if bad else Status.ROTATED
        items.append(item(r, status))
        results.append(
            result_of(account_of(f"acct-{k}", "corp-ad", [r]), status, in_sync=0 if bad else 1)
        )
    return replace(record(items), accounts=tuple(results))


def test_large_record_caps_the_accounts_table_attention_first(tmp_path: Path) -> None:
    limit = html_report.MAX_ACCOUNTS_LISTED
    rec = many_accounts(limit + 500, 30)
    paths = write_reports(rec, tmp_path)
    html = paths.html.read_text("utf-8")
    names = account_names(html)
    assert len(names) == limit
    failed = sorted(
        (a.account.name for a in rec.accounts if a.status is Status.FAILED), key=stats.natural
    )
    assert len(failed) == 30
    assert names[:30] == failed
    assert (
        names[30:]
        == sorted(
            (a.account.name for a in rec.accounts if a.status is Status.ROTATED), key=stats.natural
        )[: limit - 30]
    )
    note = html.split('id="accounts-h"', 1)[1].split("</p>", 1)[0]
    note = " ".join(note.split())
    assert f"This run has {limit + 500} accounts; this table lists {limit}:" in note
    assert "the 30 that need attention, worst first, then the first others by name" in note
    assert f"<code>{paths.accounts_csv.name}</code>" in note
    assert f"<code>{paths.json.name}</code>" in note
    # the CSV and JSON have them all
    assert len(read_csv(paths.accounts_csv.read_text("utf-8"))) == 1 + limit + 500
    assert len(json.loads(paths.json.read_text("utf-8"))["accounts"]) == limit + 500
    # the accounts are on the main page only
    assert account_figures(html)["accounts"] == (limit + 500, None)


def test_more_accounts_needing_attention_than_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(html_report, "MAX_ACCOUNTS_LISTED", 10)
    rec = many_accounts(100, 20)
    html = render_html(rec)
    rows = account_rows(html)
    assert len(rows) == 10
    assert all('data-status="failed"' in r for r in rows)
    assert "the first 10 of the 20 that need attention, worst first" in " ".join(html.split())


def test_ordered_accounts_equals_one_sort_of_every_account() -> None:
    statuses = [Status.ROTATED, Status.FAILED, Status.STALE, Status.DRIFT, Status.NOT_DUE]
    results = []
    for k in range(300):
        status = statuses[k * 7 % len(statuses)]
        stale = 1 if k % 11 == 0 else 0
        login = (None, True, False)[k % 3] if k % 5 == 0 else None
        acct = account_of(f"a-{k * 37 % 300}", "corp-ad", [])
        results.append(result_of(acct, status, stale=stale, login_verified=login))

    def key(r: AccountResult) -> tuple[bool, int, stats.Natural]:
        urgent = stats.account_attention(r)
        rank = html_report._account_rank(r) if urgent else 0
        return (not urgent, rank, stats.natural(r.account.name))

    expected = sorted(results, key=key)
    listed, attention = html_report.ordered_accounts(results, 1000)
    assert listed == expected
    assert attention == sum(stats.account_attention(r) for r in results)
    assert html_report.ordered_accounts(results, 40)[0] == expected[:40]


def test_account_json_and_csv_are_streamed_not_held(tmp_path: Path) -> None:
    rec = many_accounts(6000, 10)
    tracemalloc.start()
    try:
        write_json(rec, tmp_path / "r.json")
        json_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        csv_report.write_accounts_csv(rec, tmp_path / "a.csv")
        csv_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = (tmp_path / "r.json").stat().st_size
    assert size > 5_000_000
    limit = 1 << 20  # the write buffer
    assert json_peak < limit + 1_000_000 < size, (json_peak, size)
    assert csv_peak < limit + 500_000, csv_peak


def test_account_tally_counts_once() -> None:
    rec = sample_run_accounts()
    once = iter(rec.accounts)
    t = stats.account_tally(once)
    assert next(once, None) is None
    assert t.total == 5
    assert t.attention == 4
    assert [(a.name, a.accounts, a.usages) for a in t.authorities.values()] == [
        ("corp-ad", 2, 13),
        ("corp-ldap", 2, 3),
        ("none", 1, 2),
    ]


def test_the_account_level_leaves_the_usage_figures_as_they_were() -> None:
    for plain, grouped in (
        (sample_run, sample_run_accounts),
        (sample_plan, sample_plan_accounts),
    ):
        assert figures_of(render_html(grouped())) == figures_of(render_html(plain()))
