"""Signals for monitoring: JSON log lines and the Prometheus textfile, with no secret in them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rotate import __version__
from rotate.cli import main
from tests.plugins.scene import World, all_secrets


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rotate", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
        check=False,
    )


def metrics_of(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_json_logs_and_metrics_of_a_run(world: World, tmp_path: Path) -> None:
    metrics = tmp_path / "rotate.prom"
    proc = run_cli(
        "run",
        str(world.inventory),
        "--config",
        str(world.config),
        "--out-dir",
        str(world.out),
        "--log-format",
        "json",
        "--metrics-file",
        str(metrics),
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    items = [ln for ln in lines if ln["logger"] == "rotate.items"]
    assert len(items) == len(world.rows)
    run_ids = {ln["run_id"] for ln in items}
    assert len(run_ids) == 1
    assert run_ids.pop() in proc.stdout
    assert {ln["outcome"] for ln in items} == {"rotated"}
    assert {ln["stage"] for ln in items} == {"promoted"}
    assert {ln["item"] for ln in items} == {r.label for r in world.rows}
    found = metrics_of(metrics)
    assert found[("rotate_last_run_exit_code", (("mode", "run"),))] == 0
    assert found[("rotate_items", (("mode", "run"), ("outcome", "rotated")))] == len(world.rows)
    assert found[("rotate_items", (("mode", "run"), ("outcome", "failed")))] == 0
    assert found[("rotate_last_run_duration_seconds", (("mode", "run"),))] > 0
    assert ("rotate_oldest_credential_age_seconds", (("mode", "run"),)) in found
    text = proc.stdout + proc.stderr + metrics.read_text()
    for secret in all_secrets(world):
        assert secret not in text


def test_metrics_of_a_refused_run_say_so(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    metrics = tmp_path / "m.prom"
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")  # nothing listens there
    code = main(
        ["run", str(world.inventory), "--config", str(world.config), "--metrics-file", str(metrics)]
    )
    assert code == 3
    found = metrics_of(metrics)
    assert found[("rotate_last_run_exit_code", (("mode", "run"),))] == 3


def test_version() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "rotate", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.stdout.strip() == f"rotate {__version__}"
