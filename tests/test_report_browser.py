"""The three reports as a person sees them: rendered by headless Chromium, screenshotted.

Each page is opened from a file, as an auditor would open it, with its script run
(`--virtual-time-budget`); the DOM Chromium ends up with must show the summary figures and
the charts, must show the planted `<script>` as text, and must show no effect of it. The
screenshots are kept in `test-artifacts/` for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rotate.models import RunRecord
from rotate.report import write_reports
from tests.test_report import (
    EXPECTED_BUCKETS,
    PLAN_HASH,
    figures_of,
    histogram_of,
)
from tests.test_report_accounts import (
    sample_compliance_accounts,
    sample_plan_accounts,
    sample_run_accounts,
)

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
WINDOW = (1400, 1800)
INSTALL = "install it with `apt-get install chromium` (Debian's package, /usr/bin/chromium)"


def chromium_path() -> str:
    """Debian's Chromium, or fail (in CI) or skip (elsewhere) saying how to install it."""
    found = shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None
    )
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail(f"Chromium is required in CI to check the HTML reports: {INSTALL}")
    pytest.skip(f"Chromium not found, so the reports are not checked in a browser: {INSTALL}")


def chromium(
    binary: str, profile: Path, url: str, *action: str
) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium once on `url` with a fresh profile (we run as root: no sandbox)."""
    profile.mkdir(parents=True)
    argv = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *action,
        url,
    ]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, f"chromium exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


@dataclass(frozen=True)
class Rendered:
    record: RunRecord
    dom: str  # the DOM after the page's script ran
    screenshot: Path


#: the hand-built samples of each mode, their items grouped into accounts (one of them
#: copy-only, named with the planted script)
SAMPLES: dict[str, Callable[[], RunRecord]] = {
    "run": sample_run_accounts,
    "plan": sample_plan_accounts,
    "compliance": sample_compliance_accounts,
}


@pytest.fixture(scope="module", params=list(SAMPLES))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Rendered:
    binary = chromium_path()
    name = request.param
    record = SAMPLES[name]()
    work = tmp_path_factory.mktemp(f"browser-{name}")
    paths = write_reports(record, work / "reports")
    url = paths.html.as_uri()
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / f"report-{name}.png"
    png.unlink(missing_ok=True)
    chromium(
        binary,
        work / "profile-shot",
        url,
        f"--screenshot={png}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=2000",
    )
    # The page itself beside its picture: it opens offline, like the report it is.
    shutil.copyfile(paths.html, ARTIFACTS / f"report-{name}.html")
    dom = chromium(
        binary, work / "profile-dom", url, "--dump-dom", "--virtual-time-budget=2000"
    ).stdout
    return Rendered(record, dom, png)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk comes first
    return width, height


def test_screenshot_is_kept(rendered: Rendered) -> None:
    assert rendered.screenshot.is_file()
    assert png_size(rendered.screenshot) == WINDOW
    # A blank page compresses to a few kilobytes; a rendered report is far larger.
    assert rendered.screenshot.stat().st_size > 50_000


def test_page_script_ran_under_its_content_security_policy(rendered: Rendered) -> None:
    # The filters are shown, and the row count written, only by the page's own script: had
    # the CSP hash been wrong, Chromium would have refused to run it.
    n = len(rendered.record.items)
    assert f'<output id="item-count" aria-live="polite">{n} of {n} rows shown</output>' in (
        rendered.dom
    )
    assert '<div id="item-tools" class="tools">' in rendered.dom
    assert rendered.dom.count('<button type="button" class="sort"') >= 10
    # the accounts table's eleven column heads got sort buttons too
    accounts = rendered.dom.split('<table id="accounts"', 1)[1].split("</thead>", 1)[0]
    assert accounts.count('<button type="button" class="sort"') == 11


def test_planted_script_never_ran_and_shows_as_text(rendered: Rendered) -> None:
    dom = rendered.dom
    title = dom.split("<title>", 1)[1].split("</title>", 1)[0]
    assert "PWNED" not in title
    assert rendered.record.run_id in title
    assert '<p id="pwned">' not in dom  # the element it would add
    assert "<script>document.title" not in dom
    # The planted text is on the page, as text.
    assert '&lt;script&gt;document.title="PWNED";' in dom
    assert dom.count("<script>") == 1


def test_summary_figures_are_on_the_page(rendered: Rendered) -> None:
    summary = rendered.record.summary()
    figures = figures_of(rendered.dom)
    assert figures["total"] == (summary["total"], None)
    if rendered.record.mode == "run":
        assert figures == {
            "total": (18, None),
            "rotated": (12, None),
            "failed": (2, None),
            "in_doubt": (1, None),
            "not_attempted": (2, None),
            "skipped": (1, None),
        }
    elif rendered.record.mode == "plan":
        assert figures == {
            "total": (16, None),
            "due": (8, None),
            "not_due": (6, None),
            "not_attempted": (2, None),
        }
        assert f'<code id="plan-hash">{PLAN_HASH}</code>' in rendered.dom
        assert f"rotate run inventories/prod.csv --plan-hash {PLAN_HASH}" in rendered.dom
    else:
        assert figures == {
            "total": (20, None),
            "compliant": (11, "55.0 %"),  # cred-19 and cred-20 (compliant, overdue): stale
            "overdue": (3, "15.0 %"),
            "never_rotated": (2, "10.0 %"),
            "last_attempt_failed": (2, "10.0 %"),
            "stale": (2, "10.0 %"),
            "soon": (9, None),
        }


def test_accounts_section_is_on_the_page(rendered: Rendered) -> None:
    """Every account, those needing attention first, the copy-only one flagged, the
    authorities beside the endpoints, the account figures beside the usage figures."""
    dom = rendered.dom
    record = rendered.record
    table = dom.split('<table id="accounts"', 1)[1].split("</table>", 1)[0]
    statuses = re.findall(r'<tr data-status="([a-z_]+)"', table)
    assert len(statuses) == len(record.accounts)
    expected = {
        "run": ["failed", "in_doubt", "rotated", "not_attempted", "rotated"],
        "plan": ["drift", "not_attempted", "due", "not_due"],
        "report": ["stale", "last_attempt_failed", "overdue"],
    }[record.mode]
    assert statuses == expected
    assert table.count("copy-only: host account not changed") == 1
    assert "the host account is NOT changed." in dom
    assert '<h2 id="authorities-h">Authorities</h2>' in dom
    figures = re.findall(r'<li class="figure acct f-[a-z_]+[^"]*" data-key="([a-z_]+)"', dom)
    assert figures[0] == "accounts"
    if record.mode == "report":
        assert '<h2 id="stale-h">Stale usages' in dom


def test_charts_are_on_the_page(rendered: Rendered) -> None:
    dom = rendered.dom
    chart = dom.split('<figure class="chart" id="endpoint-chart">', 1)[1].split("</figure>", 1)[0]
    assert '<svg class="bars" role="img"' in chart
    endpoints = {i.row.endpoint for i in rendered.record.items}
    assert chart.count('<g class="bar">') == len(endpoints)
    if rendered.record.mode == "run":
        assert "7: 5 rotated · 1 skipped · 1 failed" in chart
    if rendered.record.mode == "report":
        assert '<svg class="columns" role="img"' in dom
        assert histogram_of(dom) == EXPECTED_BUCKETS


def test_paged_report_pages_render_and_run_their_script(tmp_path: Path) -> None:
    """A paged report (35 items, 10 to a page): each page opens on its own, its script runs
    under its own CSP, and its links name the sibling pages that are there."""
    from tests.test_report_large import thirty_five

    binary = chromium_path()
    paths = write_reports(thirty_five(5), tmp_path / "reports", page_size=10)
    second = paths.html.with_name(paths.html.stem + "-items-2.html")
    ARTIFACTS.mkdir(exist_ok=True)
    png = ARTIFACTS / "report-paged-2.png"
    png.unlink(missing_ok=True)
    chromium(
        binary,
        tmp_path / "profile-shot",
        second.as_uri(),
        f"--screenshot={png}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--virtual-time-budget=2000",
    )
    assert png.stat().st_size > 20_000
    for page, rows in ((paths.html, 7), (second, 10)):
        dom = chromium(
            binary,
            tmp_path / f"profile-{page.stem}",
            page.as_uri(),
            "--dump-dom",
            "--virtual-time-budget=2000",
        ).stdout
        assert (
            f'<output id="item-count" aria-live="polite">{rows} of {rows} rows shown</output>'
            in (dom)
        )
        assert '<nav class="pager" id="pager-top" aria-label="Item pages">' in dom
        for href in set(re.findall(r'<a [^>]*href="([^"]+)"', dom)):
            assert (page.parent / href).is_file(), href
    assert figures_of(paths.html.read_text("utf-8"))["total"] == (35, None)
