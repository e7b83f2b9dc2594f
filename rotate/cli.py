"""argv -> settings -> run -> exit code; one error handler maps failures to exit codes."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.logging import RichHandler

from rotate import __version__
from rotate.crash import secret_values, write_crash_report
from rotate.errors import EXIT_CRASH, EXIT_INTERRUPTED, RotateError
from rotate.monitoring import ITEMS, json_handler, write_metrics
from rotate.planner import Shard
from rotate.progress import BarProgress, LogProgress, NullProgress, Progress
from rotate.runbook import Threshold
from rotate.settings import load_settings

log = logging.getLogger("rotate")

DEFAULT_CONFIG = "rotate.toml"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=default,
        help="log lines as text (default) or one JSON object a line, with a line per item",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="log more detail"
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="no progress display; warnings and the summary only",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 36500:
        raise argparse.ArgumentTypeError("must be more than 0 (days)")
    return value


def _shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _threshold(text: str) -> Threshold:
    try:
        return Threshold.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inventory", type=Path, help="inventory CSV, one row per usage of an account's password"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (TOML); default: $ROTATE_CONFIG, else ./rotate.toml",
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        default=Path("reports"),
        help="where the HTML, JSON and CSV reports go (default: reports/)",
    )
    parser.add_argument(
        "--shard",
        type=_shard,
        default=None,
        metavar="K/N",
        help="only the K-th of N parts of the inventory (0 <= K < N, a stable hash of each "
        "account: all its usages in one part), under a lease of its own: N schedulers share "
        "one inventory",
    )
    parser.add_argument(
        "--metrics-file",
        type=Path,
        default=None,
        metavar="FILE",
        help="write Prometheus metrics of the run (node-exporter textfile collector format)",
    )
    parser.add_argument(
        "--json",
        dest="json_path",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the machine-readable run record to FILE",
    )


Command = Callable[..., argparse.ArgumentParser]  # name, help=... -> its sub-parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rotate",
        description="Rotate account passwords where they are checked (Active Directory, LDAP) "
        "and in every Remotix and Spark View system that stores a copy, in bulk, keeping every "
        "password in Vault/OpenBao.",
        epilog="exit status: 0 all done; 1 some items failed, are in doubt, stale, in drift or "
        "not attempted (a plan: failed, in drift, or a usage problem found); "
        "2 bad usage, config or inventory (nothing touched); 3 refused or aborted; "
        "70 unexpected error (a bug; its trace in a crash file); 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"rotate {__version__}")
    _verbosity(parser, argparse.SUPPRESS)
    parser.set_defaults(verbose=False, quiet=False, log_format="text")
    # The same flags after the command (`rotate run inv.csv -q`), without overriding a
    # flag given before it.
    flags = argparse.ArgumentParser(add_help=False)
    _verbosity(flags, argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[flags], **kwargs)

    for add in (_plan, _run, _reconcile, _report, _demo, _simulate, _discover):
        add(command)
    return parser


def _plan(command: Command) -> None:
    p = command(
        "plan",
        help="dry run: what would rotate and why, and whether each usage's target exists "
        "with the account's username (reads only)",
    )
    _common(p)
    p.add_argument("--force", action="store_true", help="plan every row as due")
    p.add_argument(
        "--no-usage-checks",
        dest="check_usages",
        action="store_false",
        help="do not look at each usage's target on its endpoint (one read per usage; a "
        "run still skips a missing one); the accounts' logins are still checked",
    )


def _run(command: Command) -> None:
    p = command("run", help="rotate every due account, and repair every stale usage")
    _common(p)
    p.add_argument(
        "--force",
        action="store_true",
        help="rotate every account, due or not; also reset an account in drift (Vault's "
        "password no longer logs in) or changed out of band",
    )
    p.add_argument(
        "--concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="accounts in flight in the whole run (default: [run] concurrency)",
    )
    p.add_argument(
        "--max-failures",
        type=_threshold,
        default=None,
        metavar="N|N%",
        help="stop starting new accounts once more than N accounts (or N%% of them) failed "
        "or are in doubt; exit 3",
    )
    p.add_argument(
        "--canary",
        type=_positive_int,
        default=0,
        metavar="N",
        help="rotate N accounts first (spread over the endpoints); stop if any fails; exit 3",
    )
    p.add_argument(
        "--plan-hash",
        default=None,
        metavar="H",
        help="refuse (exit 3) unless inventory, config and due set are those of the approved "
        "plan H (printed by `rotate plan`)",
    )


def _reconcile(command: Command) -> None:
    p = command("reconcile", help="compare targets with Vault and repair either side")
    _common(p)
    p.add_argument(
        "--repush",
        action="store_true",
        help="re-send Vault's current password to write-only targets (address-book connections)",
    )


def _report(command: Command) -> None:
    p = command("report", help="compliance report from Vault state (reads only)")
    _common(p)
    p.add_argument(
        "--schedule-days",
        type=_positive_float,
        default=None,
        metavar="D",
        help="days until the next scheduled run: flag rows that will be overdue before it",
    )


def _demo(command: Command) -> None:
    p = command(
        "demo", help="the embedded default: OpenBao, simulators, directories, plan/run/report"
    )
    p.add_argument(
        "--out-dir",
        type=Path,
        default=Path("reports"),
        help="where the reports go (default: reports/)",
    )
    p.add_argument(
        "--inventory",
        type=Path,
        default=None,
        help="inventory to use (default: inventories/demo.csv)",
    )
    p.add_argument(
        "--config", type=Path, default=None, help="config to use (default: inventories/demo.toml)"
    )


def _simulate(command: Command) -> None:
    from rotate.sim import cli as sim_cli

    p = command("simulate", help="serve the vendor simulators and directory stand-ins on loopback")
    p.add_argument("inventory", type=Path, help="inventory whose targets the simulators hold")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config naming the endpoints (default: $ROTATE_CONFIG, else ./rotate.toml)",
    )
    sim_cli.add_arguments(p)


def _discover(command: Command) -> None:
    p = command(
        "discover", help="write an inventory CSV from what the endpoints hold (never a secret)"
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config naming the endpoints (default: $ROTATE_CONFIG, else ./rotate.toml)",
    )
    p.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="write to FILE (default: stdout)"
    )
    p.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    p.add_argument(
        "--incomplete",
        action="store_true",
        help="also write rows whose username the API does not give (empty, with a note): "
        "fill them in before `rotate plan`",
    )


def _config_path(arg: Path | None) -> Path | None:
    if arg is not None:
        return arg
    if os.environ.get("ROTATE_CONFIG"):
        return Path(os.environ["ROTATE_CONFIG"])
    return Path(DEFAULT_CONFIG) if Path(DEFAULT_CONFIG).exists() else None


def _progress(args: argparse.Namespace, console: Console) -> Progress:
    if args.quiet:
        return NullProgress()
    if args.log_format == "json":
        return LogProgress()
    if console.is_terminal:
        return BarProgress(console)
    return LogProgress()


def _logging(args: argparse.Namespace, console: Console) -> None:
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    if args.log_format == "json":
        # One JSON object a line, with a line per item (run id, item, stage, outcome).
        logging.basicConfig(level=level, handlers=[json_handler(sys.stderr)])
    elif console.is_terminal:
        # Log lines print above the live progress bar instead of tearing it.
        handler: logging.Handler = RichHandler(console=console, show_path=False)
        logging.basicConfig(level=level, format="%(message)s", handlers=[handler])
    else:
        logging.basicConfig(
            level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    # Libraries log request URLs; Spark View URLs carry passwords in their query strings.
    for noisy in ("httpx", "httpcore", "urllib3", "hvac", "aiohttp.access", "ldap3", "asyncssh"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.log_format != "json" and not args.verbose:
        ITEMS.setLevel(logging.WARNING)  # a line per item is for machines and -v


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    _logging(args, console)
    metrics = getattr(args, "metrics_file", None)
    try:
        return _dispatch(args, console)
    except RotateError as exc:
        if args.log_format == "json":
            log.error("%s", exc, extra={"exit_code": exc.exit_code})
        else:
            print(f"rotate: {exc}", file=sys.stderr)
        if metrics is not None:
            write_metrics(metrics, args.command, exc.exit_code, None)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "rotate: interrupted; unfinished rotations stay pending in Vault and the next "
            "run finishes them",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except Exception as exc:  # the crash handler: nothing else escapes main
        return _crashed(exc, args)


def _crashed(exc: Exception, args: argparse.Namespace) -> int:
    """One line naming the error's type and where its scrubbed trace went; exit 70."""
    out_dir = getattr(args, "out_dir", None)
    secrets = secret_values(os.environ)
    try:
        where = f"the full trace (secrets masked) is in {write_crash_report(exc, out_dir, secrets)}"
    except OSError:
        where = "no crash report could be written"
    print(
        f"rotate: unexpected error ({type(exc).__name__}): a bug, not a problem with your "
        f"input; {where}; unfinished rotations stay pending in Vault, the next run finishes "
        "them",
        file=sys.stderr,
    )
    metrics = getattr(args, "metrics_file", None)
    if metrics is not None:
        with contextlib.suppress(OSError):
            write_metrics(metrics, args.command, EXIT_CRASH, None)
    return EXIT_CRASH


def _dispatch(args: argparse.Namespace, console: Console) -> int:
    from rotate.app import Invocation, execute, problem_lines, summary_line

    if args.command == "demo":
        from rotate.demo import run_demo

        return run_demo(args.out_dir, args.inventory, args.config, _progress(args, console))
    if args.command == "discover":
        from rotate.discover import run_discover

        return run_discover(
            load_settings(_config_path(args.config)),
            args.out,
            force=args.force,
            incomplete=args.incomplete,
        )
    if args.command == "simulate":
        from rotate.inventory import load_inventory
        from rotate.sim import cli as sim_cli

        settings = load_settings(_config_path(args.config))
        rows = load_inventory(args.inventory, settings)
        return sim_cli.run(args, settings, rows)
    settings = load_settings(_config_path(args.config))
    invocation = Invocation(
        mode=args.command,
        inventory=args.inventory,
        settings=settings,
        out_dir=args.out_dir,
        json_path=args.json_path,
        force=getattr(args, "force", False),
        concurrency=getattr(args, "concurrency", None),
        max_failures=getattr(args, "max_failures", None),
        canary=getattr(args, "canary", 0),
        repush=getattr(args, "repush", False),
        plan_hash=getattr(args, "plan_hash", None),
        schedule_days=getattr(args, "schedule_days", None),
        check_usages=getattr(args, "check_usages", True),
        shard=args.shard,
        metrics_path=args.metrics_file,
        progress=_progress(args, console),
    )
    result = execute(invocation)
    if args.metrics_file is not None:
        write_metrics(args.metrics_file, args.command, result.exit_code, result.record)
    print(summary_line(result.record))
    for line in problem_lines(result.record):
        print(line)
    for failure in result.not_written:
        print(f"rotate: not written: {failure}", file=sys.stderr)
    if result.record.plan_hash:
        print(
            f"plan hash: {result.record.plan_hash}  (approve it with: rotate run "
            f"{args.inventory} --plan-hash {result.record.plan_hash})"
        )
    print(f"report: {result.reports.html}")
    print(f"data:   {result.reports.json} {result.reports.csv}")
    return result.exit_code
