"""Outputs are safe before anything changes, and a crash says one line: the out dir checked
first (exit 2), the `--json` record written first and on its own, a refusal recorded, and an
unexpected exception exiting 70 with its trace in a file scrubbed of secrets."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

import rotate.report
from rotate.errors import EXIT_CRASH, EXIT_ITEMS_FAILED, EXIT_REFUSED, EXIT_USAGE
from tests.plugins.scene import World, cli, snapshot


def test_an_unwritable_out_dir_is_refused_before_any_change(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    before = snapshot(world, world.client)
    argv = ["run", "--out-dir", str(blocker / "reports")]
    assert cli_with(world, *argv) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "nothing was changed" in err
    assert "--out-dir" in err
    assert snapshot(world, world.client) == before
    assert sum(world.host.simulator(n).counters.requests for n in world.states) == 0
    # The same for the --json file's directory.
    json_path = blocker / "record.json"
    assert cli(world, "run", "--json", str(json_path)) == EXIT_USAGE
    assert "--json" in capsys.readouterr().err
    assert snapshot(world, world.client) == before


def cli_with(world: World, mode: str, *args: str) -> int:
    """`rotate <mode> INVENTORY --config ...` with its own --out-dir given in `args`."""
    from rotate.cli import main

    return main([mode, str(world.inventory), "--config", str(world.config), *args])


def test_a_report_failing_after_the_run_keeps_the_json_record_and_the_summary(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rotate.report, "write_html", full_disk)
    json_path = world.out.parent / "record.json"
    code = cli(world, "run", "--json", str(json_path))
    captured = capsys.readouterr()
    assert code == EXIT_ITEMS_FAILED  # every item rotated, but a report is missing
    record = json.loads(json_path.read_text())
    assert record["summary"]["rotated"] == len(world.rows)
    assert "40 item(s) of 30 account(s): 40 rotated" in captured.out  # the summary line
    assert "not written:" in captured.err
    assert "No space left on device" in captured.err
    # The other reports are there: the JSON and both CSVs beside the missing page.
    written = {p.suffix for p in world.out.iterdir()}
    assert written == {".json", ".csv"}


def test_a_refused_run_still_writes_its_json_record(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")  # nothing listens there
    json_path = world.out.parent / "refused.json"
    assert cli(world, "run", "--json", str(json_path)) == EXIT_REFUSED
    record = json.loads(json_path.read_text())
    assert record["aborted"].startswith("refused before any change: ")
    assert "unreachable" in record["aborted"]
    assert record["items"] == []
    assert record["summary"]["total"] == 0
    assert world.token not in json_path.read_text()
    capsys.readouterr()


def test_an_unexpected_exception_is_one_line_and_a_scrubbed_crash_file(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = os.environ["GW1_PASSWORD"]

    def bug(*args: object, **kwargs: object) -> None:
        raise RuntimeError(
            f"boom with {world.token} and {gateway} near "
            f"http://127.0.0.1:1/SERVER?action=update&pwd={gateway}"
        )

    monkeypatch.setattr("rotate.app.execute", bug)
    assert cli(world, "run") == EXIT_CRASH
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "unexpected error (RuntimeError)" in lines[0]
    assert "Traceback" not in err
    assert world.token not in err
    assert gateway not in err
    (crash,) = world.out.glob("crash-*.txt")
    text = crash.read_text()
    assert "Traceback" in text
    assert "RuntimeError: boom with ***" in text
    assert world.token not in text
    assert gateway not in text
    assert "action=update" not in text  # the URL's query string is masked
    assert oct(crash.stat().st_mode & 0o777) == "0o600"
