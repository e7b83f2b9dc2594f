"""Large records: JSON and CSV streamed item by item, HTML summarised and paged, figures
counted in one pass, and small reports unchanged (one page, every item)."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import random
import re
import tracemalloc
from dataclasses import replace
from datetime import timedelta
from html import unescape
from pathlib import Path

import pytest

from rotate.inventory import load_inventory
from rotate.models import (
    Drift,
    EndpointProbe,
    ItemResult,
    RunRecord,
    Stage,
    Status,
)
from rotate.report import (
    _files,
    csv_report,
    html_report,
    json_record,
    json_report,
    render_html,
    stats,
    write_json,
    write_reports,
)
from rotate.settings import load_settings
from tests.test_report import HOSTILE, PLANTED, STARTED, item, record, row, table_body

ROOT = Path(__file__).resolve().parents[1]
ENDPOINTS = ("office-mac", "cloud", "gw1", "edge-2", "edge-10")
KINDS = {
    "office-mac": "connection",
    "cloud": "computer",
    "gw1": "server",
    "edge-2": "server",
    "edge-10": "computer",
}
#: what a run page lists first on a paged report
ATTENTION = {"failed", "in_doubt", "not_attempted", "skipped"}


def varied(n: int, mode: str = "run", seed: int = 7) -> RunRecord:
    """`n` items over five endpoints with every field varied: None and not, unicode, quotes,
    control characters, follow-ups, every status of `mode`."""
    rng = random.Random(seed)
    statuses = {
        "run": [Status.ROTATED] * 6 + [Status.FAILED, Status.IN_DOUBT, Status.SKIPPED],
        "plan": [Status.DUE, Status.NOT_DUE, Status.NOT_DUE, Status.NOT_ATTEMPTED],
        "report": [Status.COMPLIANT] * 4
        + [Status.OVERDUE, Status.NEVER_ROTATED, Status.LAST_ATTEMPT_FAILED],
    }[mode]
    items = []
    for i in range(n):
        endpoint = ENDPOINTS[i % len(ENDPOINTS)]
        kind = KINDS[endpoint]
        status = rng.choice(statuses)
        age = None if rng.random() < 0.1 else round(rng.uniform(0, 300), 3)
        r = row(
            f"t-{i}-ünï\u2028{rng.randrange(10**6)}" if i % 11 == 0 else f"host-{i}",
            endpoint=endpoint,
            kind=kind,
            protocol="VNC" if kind == "computer" and i % 3 == 0 else "RDP",
            port=3390 if i % 7 == 0 else None,
            line=i + 2,
            domain="CORP" if i % 4 == 0 else None,
            username='say "hi"\t\\ \x01' if i % 13 == 0 else f"user{i % 5}",
            owner="=SUM(A1)" if i % 17 == 0 else "it-ops",
            policy="vnc" if i % 3 == 0 else "default",
        )
        items.append(
            item(
                r,
                status,
                stage=rng.choice(list(Stage)),
                verified=rng.choice([None, True, False]),
                vault_version=rng.choice([None, 1, 7]),
                reason=rng.choice(["", "age 91.0 d reached max 90 d", "never rotated", "forced"]),
                error=rng.choice(["", "HTTP 500 from target", "naïve → café ☕"]),
                duration_s=rng.uniform(0, 100),
                last_rotated=None if age is None else STARTED - timedelta(days=age),
                age_days=age,
                max_age_days=rng.choice([None, 30, 90]),
                due_before_next_run=rng.choice([None, True, False]) if mode == "report" else None,
                last_failure_at=STARTED if status is Status.LAST_ATTEMPT_FAILED else None,
                followups=("access link 1a2b updated", "two-factor reset") if i % 9 == 0 else (),
            )
        )
    probes = (EndpointProbe("edge-2", "sparkview", False, "connection refused"),)
    rec = record(items, mode=mode, probes=probes)
    return replace(rec, drift=Drift(("rotate/x",), ()) if mode == "report" else None)


def expected_json(rec: RunRecord) -> str:
    """The text the writers wrote before they streamed: one `json.dumps` of the record."""
    return json.dumps(json_record(rec), indent=2, ensure_ascii=False) + "\n"


class Writes(io.StringIO):
    """A text sink that remembers how large each write was."""

    def __init__(self) -> None:
        super().__init__(newline="")
        self.sizes: list[int] = []

    def write(self, s: str) -> int:
        self.sizes.append(len(s))
        return super().write(s)


# --- JSON -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["run", "plan", "report"])
def test_streamed_json_is_exactly_the_record_as_one_dump(tmp_path: Path, mode: str) -> None:
    rec = varied(3000, mode)
    path = write_json(rec, tmp_path / "r.json")
    text = path.read_text("utf-8")
    assert text == expected_json(rec)  # the same bytes: same structure, key order, layout
    data = json.loads(text)
    assert data == json_record(rec)
    assert len(data["items"]) == 3000
    assert list(data)[-1] == "items"
    assert list(data["items"][0]) == list(rec.items[0].as_record())
    if mode == "report":
        assert data["percentages"] == stats.percentages(rec.items)
        assert data["due_before_next_run"] == sum(1 for i in rec.items if i.due_before_next_run)


def test_streamed_json_of_no_items_and_of_odd_values() -> None:
    empty = record([])
    assert json_report.dumps(empty) == expected_json(empty)
    assert json.loads(json_report.dumps(empty))["items"] == []
    odd = record(
        [
            item(row("a"), Status.FAILED, duration_s=float("nan"), error="\x00\u2029\ud7ff"),
            item(row("b", line=3), Status.ROTATED, duration_s=float("inf"), followups=("x",)),
        ]
    )
    assert json_report.dumps(odd) == expected_json(odd)


def test_json_is_written_item_by_item_in_small_pieces() -> None:
    rec = varied(2000)
    out = Writes()
    json_report.write_to(rec, out)
    assert out.getvalue() == expected_json(rec)
    # Never the whole record in one string: at least one write per item, each one small.
    assert len(out.sizes) >= len(rec.items)
    assert max(out.sizes) < 5_000 < len(out.getvalue()) // 100


def _peak_while(write: object) -> int:
    assert callable(write)
    tracemalloc.start()
    try:
        write()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_writing_json_and_csv_holds_far_less_than_the_file(tmp_path: Path) -> None:
    rec = varied(6000)
    json_peak = _peak_while(lambda: write_json(rec, tmp_path / "r.json"))
    csv_peak = _peak_while(lambda: csv_report.write_csv(rec, tmp_path / "r.csv"))
    json_size = (tmp_path / "r.json").stat().st_size
    csv_size = (tmp_path / "r.csv").stat().st_size
    assert json_size > 4_000_000
    assert csv_size > 1_000_000
    # The write buffer (1 MiB) and one item at a time: never the file's text in memory,
    # which alone would be the file's size (and its bytes as much again, plus the buffer).
    limit = _files.BUFFER_BYTES + 500_000
    assert json_peak < limit < json_size, (json_peak, json_size)
    assert csv_peak < limit, (csv_peak, csv_size)


def test_a_failed_stream_leaves_the_old_file_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")
    rec = varied(50)
    calls = 0
    real = ItemResult.as_record

    def breaks_midway(self: ItemResult) -> dict[str, object]:
        nonlocal calls
        calls += 1
        if calls == 30:
            raise RuntimeError("boom")
        return real(self)

    monkeypatch.setattr(ItemResult, "as_record", breaks_midway)
    with pytest.raises(RuntimeError, match="boom"):
        write_json(rec, path)
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


# --- CSV --------------------------------------------------------------------------------


def test_streamed_csv_has_every_item_in_record_order(tmp_path: Path) -> None:
    rec = varied(3000)
    path = csv_report.write_csv(rec, tmp_path / "r.csv")
    raw = path.read_bytes()
    assert raw.count(b"\r\n") >= 3001  # CSV's own line ends, never translated
    assert b"\r\r\n" not in raw
    lines = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    assert lines[0] == list(csv_report.COLUMNS)
    assert len(lines) == 1 + len(rec.items)
    col = {name: i for i, name in enumerate(lines[0])}
    for line, it in zip(lines[1:], rec.items, strict=True):
        assert line[col["target"]] == it.row.target
        assert line[col["line"]] == str(it.row.line)
        assert line[col["status"]] == it.status.value
        assert line[col["followups"]] == "; ".join(it.followups)
        assert line[col["verified"]] == {None: "", True: "true", False: "false"}[it.verified]
        # formula neutralisation survives streaming
        expected_owner = "'=SUM(A1)" if it.row.owner.startswith("=") else it.row.owner
        assert line[col["owner"]] == expected_owner
    assert sum(1 for line in lines[1:] if line[col["owner"]] == "'=SUM(A1)") == len(
        range(0, 3000, 17)
    )


def test_csv_is_written_row_by_row() -> None:
    rec = varied(1000)
    out = Writes()
    csv_report.write_to(rec, out)
    assert len(out.sizes) >= 1 + len(rec.items)
    assert max(out.sizes) < 2_000
    assert out.getvalue() == csv_report.dumps(rec)


# --- figures: one pass --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["run", "plan", "report"])
def test_tally_counts_every_figure_in_one_pass(mode: str) -> None:
    rec = varied(700, mode)
    items = list(rec.items)
    once = iter(items)  # an iterator can be walked once only
    t = stats.tally(once)
    assert next(once, None) is None
    assert t.summary() == rec.summary()
    assert list(t.summary()) == list(rec.summary())  # the same key order in the JSON
    assert t.statuses == stats.status_counts(items)
    assert t.soon == sum(1 for i in items if i.due_before_next_run)
    expected_ages: dict[str, int] = {}
    for it in items:
        key = stats.age_bucket(it)
        expected_ages[key] = expected_ages.get(key, 0) + 1
    assert {b.key: b.count for b in t.age_histogram() if b.count} == expected_ages
    per_endpoint = {e.endpoint: e.total for e in t.by_endpoint()}
    assert per_endpoint == {e: sum(1 for i in items if i.row.endpoint == e) for e in ENDPOINTS}
    assert [e.endpoint for e in t.by_endpoint()] == [
        "cloud",
        "edge-2",
        "edge-10",
        "gw1",
        "office-mac",
    ]
    reasons = {(i.status.value, stats.why(i)) for i in items if i.status in stats.PLAN_STATUSES}
    assert set(t.reasons) == reasons


def test_ordering_by_groups_equals_one_sort_of_every_item() -> None:
    rng = random.Random(3)
    items = []
    for n in range(1500):
        endpoint = rng.choice(["gw1", "GW1", "gw10", "gw2", "Edge"])
        status = rng.choice([Status.ROTATED, Status.FAILED, Status.SKIPPED, Status.COMPLIANT])
        r = row(f"h-{rng.randrange(40)}", endpoint=endpoint, line=rng.randrange(5), kind="server")
        soon = rng.choice([None, True, False])
        items.append(ItemResult(row=r, status=status, due_before_next_run=soon, reason=str(n)))
    listed, attention = html_report.ordered(items)
    assert listed == sorted(items, key=html_report.item_order)  # stable on equal keys too
    assert attention == sum(1 for i in items if html_report.needs_attention(i))
    first, _ = html_report.ordered(items, attention_first=True)
    assert first == sorted(
        items, key=lambda i: (not html_report.needs_attention(i), html_report.item_order(i))
    )


# --- HTML: paging -------------------------------------------------------------------------

STEM = "run-20250304T050607Z-ab12"


def page_files(out: Path) -> list[Path]:
    """The report's pages: the main page, then items-2, items-3, ... in number order."""
    pages = sorted(out.glob(f"{STEM}-items-*.html"), key=lambda p: int(p.stem.rsplit("-", 1)[1]))
    return [out / f"{STEM}.html", *pages]


def rows_of(html: str) -> list[tuple[str, str]]:
    """(status, target) of each row of a page's item table, in order."""
    return re.findall(
        r'<tr data-status="([a-z_]+)"[^>]*>\n(?:<td>[^\n]*</td>\n){2}'
        r'<td class="mono wrap target">([^ <]+) <span',
        table_body(html),
    )


def links(html: str, rel: str) -> list[str]:
    return re.findall(rf'<a class="step" rel="{rel}" href="([^"]+)">', html)


def thirty_five(n_bad: int) -> RunRecord:
    """35 run items over three endpoints: `n_bad` failed or in doubt spread among the
    rotated, and 2 skipped."""
    bad = set(range(0, 35, 35 // n_bad)[:n_bad])
    items = []
    for n in range(35):
        if n in bad:
            status = Status.FAILED if n % 2 else Status.IN_DOUBT
        elif n in (5, 33):
            status = Status.SKIPPED
        else:
            status = Status.ROTATED
        endpoint = ("office-mac", "cloud", "gw1")[n % 3]
        items.append(item(row(f"t{n:02d}", endpoint=endpoint, line=n + 2), status))
    return record(items)


def test_paged_report_spreads_35_items_over_linked_pages(tmp_path: Path) -> None:
    rec = thirty_five(5)
    paths = write_reports(rec, tmp_path, page_size=10)
    attention = [i for i in rec.items if i.status.value in ATTENTION]
    assert len(attention) == 7  # 5 failed or in doubt, 2 skipped
    pages = page_files(tmp_path)
    # page 1: the 7 needing attention; pages 2-4: the 28 others, 10 to a page
    assert [p.name for p in pages] == [
        f"{STEM}.html",
        f"{STEM}-items-2.html",
        f"{STEM}-items-3.html",
        f"{STEM}-items-4.html",
    ]
    assert pages[0] == paths.html
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [p.name for p in pages] + [paths.csv.name, paths.accounts_csv.name, paths.json.name]
    )
    htmls = [p.read_text("utf-8") for p in pages]
    listed = [rows_of(h) for h in htmls]
    assert [len(rows) for rows in listed] == [7, 10, 10, 8]
    # problems first: the first page has every item needing attention, and only those
    assert {status for status, _ in listed[0]} == {"failed", "in_doubt", "skipped"}
    assert [s for rows in listed[1:] for s, _ in rows] == ["rotated"] * 28
    # every item exactly once across the pages
    targets = [t for rows in listed for _, t in rows]
    assert sorted(targets) == sorted(i.row.target for i in rec.items)
    assert len(set(targets)) == 35
    # the others in the table's order (by endpoint, then target)
    others = [i for i in rec.items if i.status.value not in ATTENTION]
    assert targets[7:] == [i.row.target for i in sorted(others, key=html_report.item_order)]
    # previous / next links chain the pages; every page links to every other
    names = [p.name for p in pages]
    for n, html in enumerate(htmls):
        assert links(html, "prev") == ([names[n - 1]] * 2 if n else [])
        assert links(html, "next") == ([names[n + 1]] * 2 if n + 1 < len(names) else [])
        hrefs = set(re.findall(r'<li(?: class="attn")?><a href="([^"]+)"', html))
        assert hrefs == set(names) - {names[n]}
        assert '<span aria-current="page" title="items ' in html
    # the main page: the figures of all 35, and says where the rest is
    main = htmls[0]
    assert '<span class="n">35</span> <span class="what">total</span>' in main
    assert '<span class="n">28</span> <span class="what">rotated</span>' in main
    note = main.split('<p class="note" role="note">', 1)[1].split("</p>", 1)[0]
    assert "This run has 35 items, too many for one page." in note
    assert "the 7 items that need attention" in note
    assert "The 28 others follow on pages 2 to 4, 10 to a page." in note
    assert f"<code>{paths.csv.name}</code>" in note
    assert f"<code>{paths.json.name}</code>" in note
    # a further page: only its part of the table, the run's title, a link back
    third = htmls[2]
    assert "<title>Rotation run 20250304T050607Z-ab12, items page 3 of 4</title>" in third
    assert "Items 18 to 27 of 35: items that need no attention" in unescape(third)
    assert f'<a href="{STEM}.html">the first page</a>' in third
    assert 'id="summary-h"' not in third
    assert 'id="manifest-h"' not in third
    assert 'id="endpoint-chart"' not in third


def test_paged_report_with_more_problems_than_a_page(tmp_path: Path) -> None:
    rec = thirty_five(13)  # 13 failed or in doubt + 2 skipped = 15 needing attention
    write_reports(rec, tmp_path, page_size=10)
    htmls = [p.read_text("utf-8") for p in page_files(tmp_path)]
    listed = [rows_of(h) for h in htmls]
    # attention pages hold only items needing attention: 10, 5; then 20 others: 10, 10
    assert [len(rows) for rows in listed] == [10, 5, 10, 10]
    assert all(s in ATTENTION for rows in listed[:2] for s, _ in rows)
    assert all(s == "rotated" for rows in listed[2:] for s, _ in rows)
    failures = [s for s, _ in listed[0]]
    assert failures == sorted(failures, key=["failed", "in_doubt", "skipped"].index)
    assert "the first 10 of the 15 items that need attention" in htmls[0]
    assert (
        "The 25 others follow on pages 2 to 4, 10 to a page: the rest of those that need "
        "attention up to page 2, then those that need none." in " ".join(htmls[0].split())
    )
    assert htmls[0].count('<li class="attn">') == 2 * 2  # in the links above and below
    assert "Items 11 to 15 of 35: items that need attention, failures first." in htmls[1]


def test_paged_report_caps_the_pages_and_says_where_the_rest_is(tmp_path: Path) -> None:
    rec = thirty_five(5)
    pages = list(html_report.render_pages(rec, page_size=10, max_pages=2, csv_name="r.csv"))
    assert [name for name, _ in pages] == [f"{STEM}-items-2.html", f"{STEM}.html"]
    main = pages[-1][1]
    assert len(rows_of(main)) + len(rows_of(pages[0][1])) == 17
    assert "The remaining 18 items are on no page: a report has at most 2 pages." in main
    assert "<code>r.csv</code>" in main
    assert "the remaining 18 items are on no page" in pages[0][1]


def test_a_shorter_report_removes_the_pages_of_a_longer_one(tmp_path: Path) -> None:
    rec = thirty_five(5)
    write_reports(rec, tmp_path, page_size=5)
    assert len(page_files(tmp_path)) == 2 + 6  # 7 needing attention: 2 pages; 28 others: 6
    write_reports(rec, tmp_path, page_size=10)
    assert len(page_files(tmp_path)) == 4
    write_reports(rec, tmp_path)  # fits one page now
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".csv", ".csv", ".html", ".json"]


def test_every_page_is_self_contained_and_escapes_hostile_text(tmp_path: Path) -> None:
    items = [
        item(
            row(
                f"t{n}{HOSTILE}",
                endpoint=f"e{HOSTILE}",
                username=HOSTILE,
                owner=PLANTED,
                domain=HOSTILE,
                policy=HOSTILE,
                line=n + 2,
            ),
            (Status.FAILED, Status.ROTATED, Status.OVERDUE)[n % 3],
            reason=HOSTILE,
            error=PLANTED,
            followups=(HOSTILE,),
        )
        for n in range(12)
    ]
    for mode in ("run", "plan", "report"):
        out = tmp_path / mode
        rec = replace(record(items, mode=mode), warnings=(HOSTILE,))
        write_reports(rec, out, page_size=4)
        pages = sorted(out.glob("*.html"))
        assert len(pages) > 2
        for page in pages:
            html = page.read_text("utf-8")
            assert HOSTILE not in html
            assert PLANTED not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
            assert html.count("<script>") == 1
            assert "<link" not in html
            assert not re.search(r"\ssrc\s*=", html)
            # links only to sibling pages, by relative name
            for href in re.findall(r'href="([^"]+)"', html):
                assert (out / href).is_file(), href
            found = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
            assert found is not None
            csp = unescape(found.group(1))
            for tag in ("style", "script"):
                body = re.search(rf"<{tag}>(.*?)</{tag}>", html, re.S)
                assert body is not None
                digest = base64.b64encode(hashlib.sha256(body.group(1).encode()).digest())
                assert f"{tag}-src 'sha256-{digest.decode()}'" in csp


# --- HTML: small reports stay as they were ----------------------------------------------


def demo_record(mode: str) -> RunRecord:
    """The demo's 40 inventory rows, as a record of `mode`."""
    settings = load_settings(ROOT / "inventories" / "demo.toml", env={"VAULT_TOKEN": "t"})
    rows = load_inventory(ROOT / "inventories" / "demo.csv", settings)
    status = {"run": Status.ROTATED, "plan": Status.DUE, "report": Status.COMPLIANT}[mode]
    items = [
        ItemResult(
            row=r,
            status=Status.FAILED if n == 17 else status,
            stage=Stage.PROMOTED,
            vault_path=r.vault_path,
            vault_version=2,
            last_rotated=STARTED,
            age_days=0.0,
            max_age_days=90,
        )
        for n, r in enumerate(rows)
    ]
    return record(items, mode=mode)


@pytest.mark.parametrize("mode", ["run", "plan", "report"])
def test_demo_sized_report_is_one_page_with_every_item(tmp_path: Path, mode: str) -> None:
    rec = demo_record(mode)
    assert len(rec.items) == 40
    paths = write_reports(rec, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (paths.html, paths.json, paths.csv, paths.accounts_csv)
    )
    html = paths.html.read_text("utf-8")
    # every item, in the table's order (failures first, then by endpoint and target)
    assert [t for _, t in rows_of(html)] == [
        i.row.target for i in sorted(rec.items, key=html_report.item_order)
    ]
    assert rows_of(html)[0][0] == "failed"
    assert "too many for one page" not in html
    assert 'class="pager"' not in html
    assert "href=" not in html
    # exactly the page a report without paging would be
    assert html == render_html(rec, csv_name=paths.csv.name, json_name=paths.json.name)
    assert html == render_html(
        rec, csv_name=paths.csv.name, json_name=paths.json.name, page_size=10**9
    )


def test_a_page_exactly_full_is_not_paged() -> None:
    rec = thirty_five(5)
    assert len(list(html_report.render_pages(rec, page_size=35))) == 1
    assert len(list(html_report.render_pages(rec, page_size=34))) == 2  # 7, then 28
    assert len(rows_of(render_html(rec, page_size=35))) == 35


def _two(mode: str) -> RunRecord:
    """Two items with every cell filled in one way or the other (port, domain, quotes,
    markup in owner, error and follow-ups, no age, no max age)."""
    r = row("srv-7", endpoint="gw1", kind="server", domain="CORP", line=9, owner="it <ops>")
    r = replace(r, policy="strict")
    c = row("mac-3", endpoint="cloud", kind="computer", port=3390, line=4, username="o'neil")
    ago = {"plan": 95.0, "report": 95.5}.get(mode)
    first = {
        "run": item(
            r,
            Status.ROTATED,
            stage=Stage.PROMOTED,
            verified=True,
            vault_version=7,
            duration_s=12.5,
            last_rotated=STARTED,
            reason="age 95.0 d reached max 90 d",
            followups=("access link 1a2b updated", "two-factor <reset>"),
        ),
        "plan": item(
            r,
            Status.DUE,
            reason="age 95.0 d reached max 90 d",
            age_days=ago,
            max_age_days=90,
            last_rotated=STARTED - timedelta(days=ago or 0),
            vault_version=3,
        ),
        "report": item(
            r,
            Status.OVERDUE,
            age_days=ago,
            max_age_days=90,
            last_rotated=STARTED - timedelta(days=ago or 0),
            vault_version=3,
            due_before_next_run=True,
            last_failure_at=STARTED,
            reason="age 95.5 d, max 90 d",
            error="Vault <slow>",
        ),
    }[mode]
    second = {
        "run": item(c, Status.FAILED, stage=Stage.STAGED, error='HTTP 422 "rejected"'),
        "plan": item(c, Status.NOT_DUE, reason="age 3.0 d within max 90 d", error="x & y"),
        "report": item(c, Status.COMPLIANT, due_before_next_run=False),
    }[mode]
    return record([first, second], mode=mode)


_TARGETS = (
    '<td>{ep}</td>\n<td>{kind}</td>\n<td class="mono wrap target">{t} <span class="muted line">'
    "line {line}</span></td>\n"
)
SRV = _TARGETS.format(ep="gw1", kind="server", t="srv-7", line=9) + (
    '<td>RDP</td>\n<td class="mono wrap"><span class="muted">CORP\\</span>admin</td>\n'
)
MAC = _TARGETS.format(ep="cloud", kind="computer", t="mac-3", line=4) + (
    '<td>RDP<span class="muted">:3390</span></td>\n<td class="mono wrap">o&#39;neil</td>\n'
)
GW1 = '      <tr data-status="{}" data-endpoint="gw1" data-kind="server">\n'
CLOUD = '      <tr data-status="{}" data-endpoint="cloud" data-kind="computer">\n'
END = "      </tr>\n"
#: the rows as the templates' cells drew them before the rows moved to rows.py (copied from
#: that version's output): a small report must look exactly as it did (but for the status
#: ranks in `data-sort`, which grew when drift and stale came in before not attempted)
BEFORE = {
    "run": CLOUD.format("failed")
    + MAC
    + '<td data-sort="0"><span class="badge s-failed">failed</span></td>\n<td>staged</td>\n'
    '<td>—</td>\n<td class="mono wrap">rotate/cloud/mac-3</td>\n<td data-sort="">—</td>\n'
    '<td class="num" data-sort="0.0">—</td>\n<td class="wrap"></td>\n'
    '<td class="wrap err">HTTP 422 &#34;rejected&#34;</td>\n'
    + END
    + GW1.format("rotated")
    + SRV
    + '<td data-sort="9"><span class="badge s-rotated">rotated</span></td>\n<td>promoted</td>\n'
    '<td>verified</td>\n<td class="mono wrap">rotate/gw1/srv-7 <span class="ver">v7</span></td>\n'
    '<td data-sort="2025-03-04T05:06:07+00:00"><time datetime="2025-03-04T05:06:07+00:00">'
    "2025-03-04 05:06:07 UTC</time></td>\n"
    '<td class="num" data-sort="12.5">12.5 s</td>\n'
    '<td class="wrap">age 95.0 d reached max 90 d<br><span class="muted">access link 1a2b '
    'updated</span><br><span class="muted">two-factor &lt;reset&gt;</span></td>\n'
    '<td class="wrap err"></td>\n' + END,
    "plan": GW1.format("due")
    + SRV
    + '<td data-sort="8"><span class="badge s-due">due</span></td>\n<td>age over max age</td>\n'
    '<td class="mono">strict</td>\n'
    '<td data-sort="2024-11-29T05:06:07+00:00"><time datetime="2024-11-29T05:06:07+00:00" '
    'title="2024-11-29 05:06:07 UTC">2024-11-29</time></td>\n'
    '<td class="num" data-sort="95.0">95.0</td>\n<td class="num">90</td>\n'
    '<td class="mono wrap">rotate/gw1/srv-7 <span class="ver">v3</span></td>\n'
    '<td class="wrap">age 95.0 d reached max 90 d</td>\n'
    + END
    + CLOUD.format("not_due")
    + MAC
    + '<td data-sort="9"><span class="badge s-not_due">not due</span></td>\n'
    '<td>within max age</td>\n<td class="mono">default</td>\n<td data-sort="">—</td>\n'
    '<td class="num" data-sort="-1">—</td>\n<td class="num">—</td>\n'
    '<td class="mono wrap">rotate/cloud/mac-3</td>\n'
    '<td class="wrap">age 3.0 d within max 90 d <span class="err">x &amp; y</span></td>\n' + END,
    "report": GW1.format("overdue")
    + SRV
    + '<td data-sort="6"><span class="badge s-overdue">overdue</span></td>\n'
    '<td data-sort="2024-11-28T17:06:07+00:00"><time datetime="2024-11-28T17:06:07+00:00" '
    'title="2024-11-28 17:06:07 UTC">2024-11-28</time></td>\n'
    '<td class="num" data-sort="95.5">95.5</td>\n<td class="num">90</td>\n'
    '<td><span class="badge s-soon">yes</span></td>\n'
    '<td data-sort="2025-03-04T05:06:07+00:00"><time datetime="2025-03-04T05:06:07+00:00" '
    'title="2025-03-04 05:06:07 UTC">2025-03-04</time></td>\n'
    '<td class="mono wrap">rotate/gw1/srv-7 <span class="ver">v3</span></td>\n'
    '<td class="wrap">it &lt;ops&gt;</td>\n'
    '<td class="wrap">age 95.5 d, max 90 d <span class="err">Vault &lt;slow&gt;</span></td>\n'
    + END
    + CLOUD.format("compliant")
    + MAC
    + '<td data-sort="9"><span class="badge s-compliant">compliant</span></td>\n'
    '<td data-sort="">—</td>\n<td class="num" data-sort="1000000000.0">—</td>\n'
    '<td class="num">—</td>\n<td>no</td>\n<td data-sort="">—</td>\n'
    '<td class="mono wrap">rotate/cloud/mac-3</td>\n<td class="wrap"></td>\n'
    '<td class="wrap"></td>\n' + END,
}


@pytest.mark.parametrize("mode", ["run", "plan", "report"])
def test_item_rows_are_exactly_what_the_templates_drew(mode: str) -> None:
    html = render_html(_two(mode))
    tbody = html.split('<table id="items"', 1)[1].split("<tbody>\n", 1)[1]
    assert tbody.split("    </tbody>", 1)[0] == BEFORE[mode]
