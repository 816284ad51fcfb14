"""The `gridpilot` command.

Each subcommand is a pair of functions: `_add_<command>(commands)` declares its arguments and
sets `handler`, and `_<command>(args) -> int` runs it and returns the exit code. A new command
(`bench`, `plan`, `replay`, `run`, `study`) adds its pair and one line in `_parser`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TypeAlias

from gridpilot.adapters import minersim
from gridpilot.adapters.actuation import DeviceUnavailableError
from gridpilot.adapters.broker import BrokerError
from gridpilot.adapters.grid import (
    read_ancillary_prices,
    read_cp_intervals,
    read_grid_events,
    read_system_load,
    read_transmission_rates,
)
from gridpilot.adapters.recorded import (
    NotRecordedError,
    RecordedDataError,
    read_bitcoin_daily,
    read_day_ahead_prices,
    read_fee_share,
    read_gpu_trace,
    read_realtime_prices,
)
from gridpilot.agent import logs, site
from gridpilot.agent.bench.guard import bench_guard
from gridpilot.agent.bench.plan import bench_plan
from gridpilot.agent.bench.prometheus import PrometheusError
from gridpilot.agent.bench.stale import FEEDS as STALE_FEEDS
from gridpilot.agent.bundled import (
    BUNDLED_BTC,
    BUNDLED_CP_INTERVALS,
    BUNDLED_DAY_AHEAD,
    BUNDLED_FEES,
    BUNDLED_GRID_EVENTS,
    BUNDLED_LOAD,
    BUNDLED_PRICES,
    BUNDLED_RATES,
    BUNDLED_TRACE,
    REFERENCE_SITE,
)
from gridpilot.agent.daemon import actuators, service
from gridpilot.agent.peaks import TRAILING_DAYS
from gridpilot.agent.replay import report
from gridpilot.agent.replay.dayplan import plan_day, render
from gridpilot.agent.replay.period import (
    ReplayData,
    ReplayGapError,
    ReplayResult,
    ReplayWindowError,
    check_gaps,
    check_window,
    data_gaps,
)
from gridpilot.agent.replay.programs import GridData, ProgramTerms
from gridpilot.agent.replay.simulation import replay
from gridpilot.agent.settings import (
    RESERVE_PRODUCTS,
    ConfigError,
    ProgramSettings,
    Settings,
    load_settings,
)
from gridpilot.agent.study.bench import bench_study
from gridpilot.agent.study.executors import (
    DaskCluster,
    Executor,
    ExecutorUnavailableError,
    ProcessPool,
)
from gridpilot.agent.study.run import run_study
from gridpilot.agent.study.spec import SpecError, load_spec

# sysexits.h EX_USAGE: a command line asking for what cannot be done (argparse's own errors
# exit 2).
EX_USAGE = 64
# sysexits.h EX_DATAERR: an input data file that cannot be used.
EX_DATAERR = 65
# sysexits.h EX_UNAVAILABLE: a service the command needs (Mosquitto) is missing.
EX_UNAVAILABLE = 69
# sysexits.h EX_CANTCREAT: an output file or folder that cannot be made.
EX_CANTCREAT = 73

# sysexits.h EX_CONFIG: a bad configuration. systemd is told not to restart on it
# (RestartPreventExitStatus), since restarting cannot fix a file.
EX_CONFIG = 78

# The subsidy-only hashprice on 2025-04-07, the latest day in the bundled Bitcoin data
# (../shared/data/btc): 0.04099 $/TH/s/day. Fees would add several percent.
DEFAULT_HASHPRICE_USD_PER_TH_DAY = 0.041

Handler = Callable[[argparse.Namespace], int]
# A string: argparse's private action class is generic only to type checkers.
SubParsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default: `sys.argv[1:]`) and return its exit code."""
    args = _parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gridpilot",
        description="Site agent for hybrid Bitcoin-mining and AI-GPU facilities.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    _add_check_config(commands)
    _add_plan(commands)
    _add_bench(commands)
    _add_replay(commands)
    _add_run(commands)
    _add_simulate(commands)
    _add_study(commands)
    return parser


def _add_check_config(commands: SubParsers) -> None:
    command = commands.add_parser(
        "check-config",
        help="validate a site file and print the site summary and merit order",
        description="Validate a site file (with GRIDPILOT_* environment overrides) and print the"
        f" site summary and merit order. Exits {EX_CONFIG} if the configuration is invalid.",
    )
    command.add_argument(
        "file",
        type=Path,
        nargs="?",
        default=REFERENCE_SITE,
        metavar="FILE",
        help="the site's TOML file (default: the bundled reference site)",
    )
    command.add_argument(
        "--hashprice",
        type=_positive_float,
        default=DEFAULT_HASHPRICE_USD_PER_TH_DAY,
        metavar="USD_PER_TH_DAY",
        help="hashprice for the breakevens, $/TH/s/day (default: %(default)s, the subsidy-only"
        " hashprice of 2025-04-07)",
    )
    command.set_defaults(handler=_check_config)


def _check_config(args: argparse.Namespace) -> int:
    settings = _settings(args.file)
    if settings is None:
        return EX_CONFIG
    print("\n".join(_site_summary(settings)))
    print()
    print("\n".join(_merit_table(settings, args.hashprice)))
    print()
    print("\n".join(_programs_summary(settings, BUNDLED_RATES)))
    print()
    topics = settings.mqtt.topics
    print("actuation: what carries out each entry's setpoints")
    name = settings.site.name
    mqtt = (topics.asic_command.replace("{site}", name), topics.gpu_command.replace("{site}", name))
    print("\n".join(actuators.describe(settings, mqtt)))
    problems = actuators.check(settings)
    if problems:
        # A warning, not an error (exit 0): the file is valid, and check-config is run
        # wherever the site file is edited and reviewed (an operator's laptop, CI), where no
        # GPU, driver or pyasic is expected. On the controller itself `gridpilot run` keeps
        # such groups down and retries them while the rest of the site runs, so refusing the
        # file would protect nothing. Hence on stderr, last, under a banner, so that it is
        # seen both on a terminal and when stdout goes to a file.
        sys.stdout.flush()
        print("\n".join(_device_warnings(problems)), file=sys.stderr)
    return 0


def _device_warnings(problems: list[tuple[str, DeviceUnavailableError]]) -> list[str]:
    one = len(problems) == 1
    lines = [
        f"gridpilot: WARNING: {len(problems)} site-file {'entry' if one else 'entries'} cannot"
        f" drive {'its' if one else 'their'} devices from this host:"
    ]
    for entry, problem in problems:
        lines.append(f"  {entry} (actuator {problem.actuator}): {problem.reason}")
        if problem.fix:
            lines.append(f"    fix: {problem.fix}")
    lines.append("  On the site controller `gridpilot run` starts all the same:")
    if any(problem.actuator != "command" for _, problem in problems):
        lines.append(
            "  - pyasic and NVML entries are down (gridpilot_device_up 0, device.down in the"
            " log) and retried until they start."
        )
    if any(problem.actuator == "command" for _, problem in problems):
        lines.append(
            "  - each command a job command cannot carry out is failed and counted"
            " (gridpilot_command_failures_total)."
        )
    return lines


def _add_run(commands: SubParsers) -> None:
    command = commands.add_parser(
        "run",
        help="the site agent: read the site over MQTT, plan, command, until stopped",
        description="Run the site agent until SIGTERM or SIGINT (a second one exits at once)."
        f" Exits {EX_CONFIG} if the configuration is invalid.",
    )
    command.add_argument("--config", type=Path, required=True, metavar="FILE")
    command.add_argument(
        "--shadow", action="store_true", help="plan and publish plans, command nothing"
    )
    command.add_argument(
        "--time-scale",
        type=_positive_float,
        default=1.0,
        metavar="X",
        help="run the agent's clock X times faster than the wall (simulated traffic only)",
    )
    command.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    if settings is None:
        return EX_CONFIG
    if args.shadow:
        agent = settings.agent.model_copy(update={"shadow": True})
        settings = settings.model_copy(update={"agent": agent})
    logs.configure()
    return service.serve(settings, time_scale=args.time_scale)


def _add_simulate(commands: SubParsers) -> None:
    command = commands.add_parser("simulate", help="simulated devices for demos and tests")
    kinds = command.add_subparsers(title="devices", metavar="KIND", required=True)
    miners = kinds.add_parser(
        "miners",
        help="a fleet of simulated LuxOS miners on loopback addresses, until SIGINT or SIGTERM",
        description="Serve N simulated miners speaking the LuxOS flavour of the cgminer API on"
        " port 4028 of consecutive loopback addresses, for an agent with actuator = 'pyasic'"
        " (miners = ['FIRST-LAST']). Each draws power as it would, asleep or awake.",
    )
    miners.add_argument("--count", type=_positive_int, default=200, metavar="N")
    miners.add_argument("--first-ip", default="127.0.1.1", metavar="ADDRESS")
    miners.add_argument(
        "--model",
        choices=("S19j Pro", "S21"),
        default="S19j Pro",
        help="the miners' model (default: %(default)s)",
    )
    miners.add_argument("--wake-s", type=_positive_float, default=60.0, metavar="S")
    miners.set_defaults(handler=_simulate_miners)


def _simulate_miners(args: argparse.Namespace) -> int:
    model = {"S19j Pro": minersim.S19J_PRO, "S21": minersim.S21}[args.model]

    async def until_signalled() -> None:
        # Handlers of our own rather than Python's KeyboardInterrupt: a process started in
        # the background by a shell inherits SIGINT ignored, and SIGTERM is how systemd and
        # test harnesses stop a service.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop.set)
        await minersim.run_fleet(
            args.count, args.first_ip, models=(model,), wake_s=args.wake_s, stop=stop
        )

    try:
        asyncio.run(until_signalled())
    except (minersim.MinerSimError, ValueError) as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_UNAVAILABLE
    return 0


def _add_site_and_prices(command: argparse.ArgumentParser) -> None:
    """The inputs every recorded-data command shares, defaulting to the bundled ones."""
    command.add_argument("--config", type=Path, default=REFERENCE_SITE, metavar="FILE")
    command.add_argument("--prices", type=Path, default=BUNDLED_PRICES, metavar="FILE")
    command.add_argument(
        "--settlement-point", default=None, metavar="NAME", help="default: the site's own"
    )
    command.add_argument("--btc", type=Path, default=BUNDLED_BTC, metavar="FILE")


def _settings(path: Path) -> Settings | None:
    """The site's settings, or None after saying on stderr what is wrong with them."""
    try:
        return load_settings(path)
    except ConfigError as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return None


def _add_plan(commands: SubParsers) -> None:
    command = commands.add_parser(
        "plan",
        help="plan one operating day of the site on recorded prices and print it",
        description="Plan one Central operating day on recorded real-time prices (taken as a"
        " perfect forecast) and print the plan hour by hour beside the always-on and threshold"
        " baselines.",
    )
    _add_site_and_prices(command)
    command.add_argument(
        "--day",
        type=date.fromisoformat,
        default=date(2024, 8, 20),
        metavar="YYYY-MM-DD",
        help="default: %(default)s, a West Texas price spike",
    )
    command.set_defaults(handler=_plan)


def _plan(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    if settings is None:
        return EX_CONFIG
    point = args.settlement_point or settings.site.settlement_point
    try:
        prices = read_realtime_prices(args.prices, point)
        hashprices = read_bitcoin_daily(args.btc)
        result = plan_day(settings, prices, hashprices, args.day)
    except (RecordedDataError, NotRecordedError) as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_DATAERR
    print("\n".join(render(result, settings)))
    return 0


def _add_replay(commands: SubParsers) -> None:
    command = commands.add_parser(
        "replay",
        help="replay recorded prices through the agent, the baselines and the hindsight bound",
        description="Replay recorded telemetry on a simulated plant through the agent, always-on,"
        " the threshold rule and the hindsight bound. With no options: the bundled ERCOT 2024"
        " year at the site's settlement point on the reference site.",
    )
    _add_site_and_prices(command)
    command.add_argument(
        "--forecast",
        default=str(BUNDLED_DAY_AHEAD),
        metavar="FILE|none",
        help="day-ahead prices; 'none' to forecast from history alone",
    )
    command.add_argument(
        "--fees",
        default=str(BUNDLED_FEES),
        metavar="FILE|none",
        help="daily fee share of miner revenue; 'none' for the default share",
    )
    command.add_argument("--gpu-trace", type=Path, default=BUNDLED_TRACE, metavar="FILE")
    command.add_argument(
        "--load",
        default=str(BUNDLED_LOAD),
        metavar="FILE|none",
        help="ERCOT's hourly system load, for 4CP; 'none' to replay energy alone, without the"
        " grid programs (4CP and reserves)",
    )
    command.add_argument(
        "--cp-intervals",
        type=Path,
        default=BUNDLED_CP_INTERVALS,
        metavar="FILE",
        help="the 4CP intervals each strategy is charged at",
    )
    command.add_argument("--rates", type=Path, default=BUNDLED_RATES, metavar="FILE")
    command.add_argument("--grid-events", type=Path, default=BUNDLED_GRID_EVENTS, metavar="FILE")
    command.add_argument(
        "--perfect-cp-alert",
        action="store_true",
        help="an analysis: tell the agent the official 4CP intervals, as a perfect bought alert"
        " would, to measure what its own 4CP forecast leaves (no strategy could run so)",
    )
    command.add_argument(
        "--hashprice",
        type=_positive_float,
        default=None,
        metavar="USD_PER_TH_DAY",
        help="a constant hashprice, fees included, in place of the Bitcoin data (for windows"
        " past it and what-if runs)",
    )
    command.add_argument(
        "--max-gap",
        type=_minutes,
        default=60.0,
        metavar="MINUTES",
        help="longest gap in the real-time prices bridged with the last price (default: 60);"
        " a longer one in the window or the agent's history before it stops the replay (gaps"
        " elsewhere in the file do not matter)",
    )
    command.add_argument(
        "--start",
        type=_utc_moment,
        default=None,
        metavar="ISO",
        help="ISO 8601, UTC unless it has an offset, on the prices' interval grid (default:"
        " the first recorded interval)",
    )
    command.add_argument(
        "--end",
        type=_utc_moment,
        default=None,
        metavar="ISO",
        help="as --start, exclusive (default: the end of the recorded prices)",
    )
    command.add_argument(
        "--one-process",
        action="store_true",
        help="run every strategy in this process, one after another (the references otherwise"
        " run beside the agent in a second one): what a year costs one core",
    )
    command.add_argument("--report", type=Path, default=None, metavar="DIR")
    command.add_argument("--json", type=Path, default=None, metavar="FILE")
    command.set_defaults(handler=_replay)


def _grid_data(args: argparse.Namespace, start: datetime, end: datetime) -> GridData | None:
    """The grid programs' files, or None for a replay of energy alone: with `--load none`, or
    where the bundled system load (the default) does not cover the window and the two weeks
    the 4CP forecast reads before it (said on stderr). A load file given that does not cover
    it is a data error."""
    if args.load == "none":
        return None
    load = read_system_load(Path(args.load))
    needed = start - timedelta(days=TRAILING_DAYS + 1)
    last = load.start_utc[-1] + timedelta(seconds=load.interval_s)
    if needed < load.start_utc[0] or end > last:
        message = (
            f"the system load covers {load.span()}, not {needed.isoformat()} to"
            f" {end.isoformat()} (the window and the two weeks before it)"
        )
        if Path(args.load) != BUNDLED_LOAD:
            raise NotRecordedError(f"{args.load}: {message}")
        print(f"gridpilot: grid programs not replayed: {message}", file=sys.stderr)
        return None
    ancillary = None if args.forecast == "none" else read_ancillary_prices(Path(args.forecast))
    return GridData(
        load=load,
        cp=read_cp_intervals(args.cp_intervals),
        rates=read_transmission_rates(args.rates),
        ancillary=ancillary,
        events=read_grid_events(args.grid_events),
        perfect_cp_alert=args.perfect_cp_alert,
    )


def _program_terms(programs: ProgramSettings) -> ProgramTerms:
    return ProgramTerms(
        failure_usd_per_mw_h=programs.failure_usd_per_mw_h,
        deploy_chance_per_hour={p: programs.deploy_chance(p) for p in RESERVE_PRODUCTS},
        transmission_usd_per_kw_year=programs.transmission_usd_per_kw_year,
    )


def _replay(args: argparse.Namespace) -> int:
    settings = _settings(args.config)
    if settings is None:
        return EX_CONFIG
    # Where the results go is checked before the replay runs: minutes of work must not be lost
    # to a folder that cannot be made.
    try:
        for folder in (args.json.parent if args.json else None, args.report):
            if folder is not None:
                folder.mkdir(parents=True, exist_ok=True)
        if args.json is not None and args.json.is_dir():
            raise IsADirectoryError(f"--json {args.json} is a folder, not a file")
    except OSError as error:
        print(f"gridpilot: cannot write results there: {error}", file=sys.stderr)
        return EX_CANTCREAT
    point = args.settlement_point or settings.site.settlement_point
    max_gap_s = args.max_gap * 60.0
    try:
        # Every gap is bridged on reading; only those in what the replay reads are judged.
        prices = read_realtime_prices(args.prices, point, max_gap_s=math.inf)
        data = ReplayData(
            prices=prices,
            hashprices=read_bitcoin_daily(args.btc),
            trace=read_gpu_trace(args.gpu_trace),
            day_ahead=None
            if args.forecast == "none"
            else read_day_ahead_prices(Path(args.forecast), point),
            fee_share=None if args.fees == "none" else read_fee_share(Path(args.fees)),
            hashprice_usd_per_th_day=args.hashprice,
        )
        start = args.start or prices.start_utc[0]
        end = args.end or prices.start_utc[-1] + timedelta(seconds=prices.interval_s)
        check_window(prices, start, end)
        data = replace(data, grid=_grid_data(args, start, end))
        check_gaps(data, start, end, max_gap_s=max_gap_s)
        for series, gap in data_gaps(data, start, end):
            print(f"gridpilot: gap in {report.describe_gap(series, gap)}", file=sys.stderr)
        template = site.site_problem(
            settings,
            start=start,
            step_s=[prices.interval_s],
            price_usd_per_mwh=[0.0],
            hashprice_usd_per_th_day=0.05,
        )
        result = replay(
            template,
            data,
            start=start,
            end=end,
            progress=_progress_bar(),
            parallel=not args.one_process,
            max_gap_s=max_gap_s,
            terms=_program_terms(settings.programs),
        )
    except ReplayWindowError as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_USAGE
    except ReplayGapError as error:
        print(f"gridpilot: {args.prices}: {error} (--max-gap bridges longer ones)", file=sys.stderr)
        return EX_DATAERR
    except (RecordedDataError, NotRecordedError) as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_DATAERR
    print("\n".join(report.table(result)))
    return _write_results(args, result)


def _write_results(args: argparse.Namespace, result: ReplayResult) -> int:
    """The JSON and the report where asked for. Each is tried even if the other fails: the
    table already printed holds the figures."""
    status = 0
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(report.summary(result), indent=2) + "\n")
            print(f"JSON: {args.json}")
        except OSError as error:
            print(f"gridpilot: cannot write the JSON: {error}", file=sys.stderr)
            status = EX_CANTCREAT
    if args.report is not None:
        try:
            print(f"report: {report.write_report(result, args.report)}")
        except OSError as error:
            print(f"gridpilot: cannot write the report: {error}", file=sys.stderr)
            status = EX_CANTCREAT
    return status


def _progress_bar() -> Callable[[int, int], None]:
    """A bar on stderr: redrawn in place on a terminal, a line every 10 % otherwise."""
    terminal = sys.stderr.isatty()
    shown = {"tenth": -1}

    def show(done: int, total: int) -> None:
        share = done / total
        if terminal:
            filled = int(share * 40)
            end = "\n" if done == total else ""
            print(
                f"\rreplay [{'#' * filled}{'.' * (40 - filled)}] {share:6.1%}",
                end=end,
                file=sys.stderr,
                flush=True,
            )
        elif int(share * 10) > shown["tenth"]:
            shown["tenth"] = int(share * 10)
            print(f"replay {share:6.1%}", file=sys.stderr, flush=True)

    return show


def _utc_moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _add_study(commands: SubParsers) -> None:
    command = commands.add_parser(
        "study",
        help="replay a grid of scenarios (AI share, business model, year, ...) and report",
        description="Replay every scenario of a study file (the product of its axes) on a local"
        " process pool or an existing Dask cluster, writing DIR/results.jsonl as each task"
        " finishes, DIR/results.parquet and DIR/results.csv, and DIR/report.md with its plots."
        " A re-run into the same DIR skips the scenarios it has figures for. Exits"
        f" {EX_CONFIG} for an invalid study or site file, 1 if some scenarios failed (their"
        " errors are in the results and the report).",
    )
    command.add_argument("spec", type=Path, metavar="SPEC.toml")
    command.add_argument("--out", type=Path, required=True, metavar="DIR")
    where = command.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:8786",
        help="a running Dask scheduler (default: $DASK_SCHEDULER_ADDRESS, else a local pool);"
        " needs the dask extra",
    )
    where.add_argument(
        "--workers",
        type=_positive_int,
        default=None,
        metavar="N",
        help="local worker processes (default: the CPU count)",
    )
    command.set_defaults(handler=_study)


def _study(args: argparse.Namespace) -> int:
    try:
        spec = load_spec(args.spec)
    except SpecError as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_CONFIG
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(f"gridpilot: cannot write results there: {error}", file=sys.stderr)
        return EX_CANTCREAT
    address = args.scheduler
    if address is None and args.workers is None:
        address = os.environ.get("DASK_SCHEDULER_ADDRESS") or None
    try:
        executor: Executor = (
            DaskCluster(address) if address else ProcessPool(args.workers or _cpu_count())
        )
    except ExecutorUnavailableError as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_UNAVAILABLE
    try:
        outcome = run_study(spec, args.out, executor)
    except (SpecError, ConfigError) as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_CONFIG
    except OSError as error:
        print(f"gridpilot: cannot write results there: {error}", file=sys.stderr)
        return EX_CANTCREAT
    run = outcome.scenarios - outcome.skipped
    retried = f", {outcome.retried} tasks retried after losing a worker" if outcome.retried else ""
    print(
        f"{outcome.scenarios} scenarios: {outcome.skipped} already in {args.out}, {run} run"
        f" ({outcome.ok} with figures, {outcome.failed} failed{retried})"
        f" in {outcome.wall_s:.1f} s"
    )
    print(f"results: {args.out / 'results.parquet'}, {args.out / 'results.csv'}")
    print(f"report: {outcome.report}")
    return 1 if outcome.failed else 0


def _cpu_count() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _add_bench(commands: SubParsers) -> None:
    command = commands.add_parser("bench", help="benchmarks")
    kinds = command.add_subparsers(title="benchmarks", metavar="KIND", required=True)
    plan = kinds.add_parser(
        "plan",
        help="time the optimizer on a synthetic site of N distinct groups and T steps",
        description="Median build and solve seconds of the optimizer on a synthetic site of N"
        " groups that cannot be merged, over T five-minute steps.",
    )
    plan.add_argument("--groups", type=_positive_int, default=1000, metavar="N")
    plan.add_argument("--steps", type=_positive_int, default=288, metavar="T")
    plan.add_argument("--runs", type=_positive_int, default=5, metavar="R")
    plan.add_argument(
        "--full-resolution",
        action="store_true",
        help="decide every step on its own (no move blocking)",
    )
    plan.add_argument(
        "--programs",
        action="store_true",
        help="with grid programs: three reserve products, awards, an expected 4CP charge",
    )
    plan.add_argument("--json", action="store_true", help="print one JSON object")
    plan.set_defaults(handler=_bench_plan)
    guard = kinds.add_parser(
        "guard",
        help="latency from a meter reading over the limit to the last shed command",
        description="Runs the agent on a synthetic site of N miner groups against a broker (its"
        " own Mosquitto on a free loopback port unless --broker is given) and reports p50 and"
        " p99 of reading-to-last-command latency over K trials, beside the broker's own"
        " publish-to-receive round trip measured in the same run.",
    )
    guard.add_argument("--groups", type=_positive_int, default=1000, metavar="N")
    guard.add_argument("--trials", type=_positive_int, default=1000, metavar="K")
    guard.add_argument("--broker", type=_host_port, default=None, metavar="HOST:PORT")
    guard.add_argument("--json", action="store_true", help="print one JSON object")
    guard.set_defaults(handler=_bench_guard)
    study = kinds.add_parser(
        "study",
        help="scenarios per minute of a short-window study on 1, 2, ... local workers",
        description="Runs a study of N threshold scenarios over three days of 2024 on the"
        " reference site into a fresh folder once per worker count and reports wall time and"
        " scenarios per minute (the pool's start, reading the year and writing the report"
        " included).",
    )
    study.add_argument("--workers", type=_positive_int, nargs="+", default=[1, 2], metavar="N")
    study.add_argument("--scenarios", type=_positive_int, default=12, metavar="N")
    study.add_argument("--json", action="store_true", help="print one JSON object")
    study.set_defaults(handler=_bench_study)
    reliability = kinds.add_parser(
        "reliability",
        help="broker restarts, SIGKILLs and fuzzed payloads against the real broker and process",
        description="Restarts its own Mosquitto R times under a running agent (recovery time,"
        " commands lost), SIGKILLs the agent K times at random instants (ledger integrity,"
        " allowance kept, time to republish) and feeds F hypothesis-generated payloads per input"
        " topic to its input handling (internal errors, rejects by reason), then stops each"
        " feed in turn with a real Prometheus evaluating the shipped alerts (time to safe mode,"
        " to the alert, back to normal), fills the ledger's disk under it (the guard still"
        " shedding, no unrecorded plan carried out), jumps its wall clock, and loads it with"
        " many meters at a high rate (guard latency, readings unaccounted for, memory). Needs"
        " the test extra (hypothesis), prometheus and libfaketime.",
    )
    reliability.add_argument("--restarts", type=_positive_int, default=20, metavar="R")
    reliability.add_argument("--kills", type=_positive_int, default=50, metavar="K")
    reliability.add_argument("--fuzz", type=_positive_int, default=10_000, metavar="F")
    reliability.add_argument(
        "--stale-feeds",
        nargs="*",
        choices=STALE_FEEDS,
        default=list(STALE_FEEDS),
        metavar="FEED",
        help=f"the feeds stopped in turn (of {', '.join(STALE_FEEDS)}; all by default, none"
        " with the option alone)",
    )
    reliability.add_argument(
        "--disk",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fill the ledger's own tmpfs under the agent (needs root; default: on)",
    )
    reliability.add_argument(
        "--outage",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="stop the broker for longer than the meter's age (default: on)",
    )
    reliability.add_argument(
        "--load-seconds",
        type=float,
        default=600.0,
        metavar="S",
        help="how long the load trial runs (0: not at all; default: %(default)g)",
    )
    reliability.add_argument("--load-meters", type=_positive_int, default=1_000, metavar="N")
    reliability.add_argument("--load-hz", type=_positive_float, default=10.0, metavar="HZ")
    reliability.add_argument("--json", action="store_true", help="print one JSON object")
    reliability.set_defaults(handler=_bench_reliability)


def _bench_plan(args: argparse.Namespace) -> int:
    result = bench_plan(
        args.groups,
        args.steps,
        runs=args.runs,
        full_resolution=args.full_resolution,
        programs=args.programs,
    )
    print(result.as_json() if args.json else result.as_text())
    return 0


def _bench_guard(args: argparse.Namespace) -> int:
    try:
        result = bench_guard(args.groups, args.trials, broker=args.broker)
    except BrokerError as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_UNAVAILABLE
    print(result.as_json() if args.json else result.as_text())
    return 0


def _bench_study(args: argparse.Namespace) -> int:
    result = bench_study(args.workers, args.scenarios)
    print(result.as_json() if args.json else result.as_text())
    return 0


def _bench_reliability(args: argparse.Namespace) -> int:
    # Imported here: it loads hypothesis, a test dependency, only when asked for.
    from gridpilot.agent.bench.reliability import bench_reliability  # noqa: PLC0415

    try:
        result = bench_reliability(
            restarts=args.restarts,
            kills=args.kills,
            fuzz=args.fuzz,
            stale_feeds=tuple(args.stale_feeds),
            disk=args.disk,
            outage=args.outage,
            load_seconds=args.load_seconds,
            load_meters=args.load_meters,
            load_hz=args.load_hz,
        )
    except (BrokerError, PrometheusError) as error:
        print(f"gridpilot: {error}", file=sys.stderr)
        return EX_UNAVAILABLE
    print(result.as_json() if args.json else result.as_text())
    return 0


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65_536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def _site_summary(settings: Settings) -> list[str]:
    limit = settings.site.interconnect_watts
    plan_to = limit - settings.site.margin_watts
    asic_watts = site.asic_peak_watts(settings)
    gpu_watts = site.gpu_peak_watts(settings)
    peak = asic_watts + gpu_watts
    units = sum(entry.count for entry in settings.asic_groups)
    nodes = sum(entry.nodes for entry in settings.gpu_groups)
    gpus = sum(entry.nodes * entry.gpus_per_node for entry in settings.gpu_groups)
    if peak > plan_to:
        verdict = ("oversubscribed by", _mw(peak - plan_to), "the agent must keep some load off")
    else:
        verdict = ("not oversubscribed", _mw(plan_to - peak), "of headroom at full load")
    rows = [
        ("interconnect limit", _mw(limit), f"settlement point {settings.site.settlement_point}"),
        ("safety margin", _mw(settings.site.margin_watts), f"plans to {_mw(plan_to)}"),
        (
            "ASIC peak",
            _mw(asic_watts),
            f"{units:,} miners in {len(site.asic_groups(settings))} groups,"
            f" overhead {settings.site.asic_overhead_factor:g}",
        ),
        (
            "GPU hall peak",
            _mw(gpu_watts),
            f"{nodes:,} nodes ({gpus:,} GPUs) in {len(site.gpu_groups(settings))} groups,"
            f" overhead {settings.site.gpu_overhead_factor:g}",
        ),
        ("total peak", _mw(peak), "every load at full power, at the meter"),
        verdict,
    ]
    return [f"site {settings.site.name}", *_table(("", "", ""), "<><", rows, header=False)]


def _merit_table(settings: Settings, hashprice_usd_per_th_day: float) -> list[str]:
    rows = site.merit_order(settings, hashprice_usd_per_th_day)
    asics = [row for row in rows if isinstance(row, site.AsicMerit)]
    gpus = [row for row in rows if isinstance(row, site.GpuMerit)]
    lines = [
        f"merit order at hashprice {hashprice_usd_per_th_day:g} $/TH/s/day, first to sleep at top"
        f" (at meter: after the {settings.site.pool_fee:.1%} pool fee and overhead)",
        *_table(
            ("model", "units", "groups", "J/TH", "breakeven $/MWh", "at meter $/MWh"),
            "<>>>>>",
            [
                (
                    row.model,
                    f"{row.units:,}",
                    f"{row.groups}",
                    f"{row.joules_per_th:.1f}",
                    f"{row.breakeven_usd_per_mwh:.1f}",
                    f"{row.breakeven_at_meter_usd_per_mwh:.1f}",
                )
                for row in asics
            ],
        ),
    ]
    if gpus:
        lines += [
            "",
            "GPU groups, curtailed after every miner, first at top",
            *_table(
                ("group", "contract", "tier", "nodes", "groups", "value $/MWh", "at meter $/MWh"),
                "<<<>>>>",
                [
                    (
                        row.name,
                        row.contract,
                        str(row.tier),
                        f"{row.nodes:,}",
                        f"{row.groups}",
                        f"{row.value_usd_per_mwh:,.0f}",
                        f"{row.value_at_meter_usd_per_mwh:,.0f}",
                    )
                    for row in gpus
                ],
            ),
        ]
    return lines


def _programs_summary(settings: Settings, rates_file: Path) -> list[str]:
    """What the site offers ERCOT beside energy: reserves by product, ERS periods, 4CP."""
    programs = settings.programs
    qualified = site.reserve_qualifications(settings)
    lines = ["grid programs (reserves at full power, at the meter; a MW serves one at a time)"]
    rows = []
    for product in RESERVE_PRODUCTS:
        carriers = [q for q in qualified if product in q.products]
        names = ", ".join(
            f"{q.name} ({q.groups} group{'s' if q.groups != 1 else ''})" for q in carriers
        )
        watts = sum(q.full_power_watts for q in carriers)
        chance = f"{programs.deploy_chance(product):g}"
        rows.append((product, _mw(watts) if carriers else "-", chance, names or "no group"))
    lines += _table(("reserve", "qualified", "deployed/h", "groups"), "<>><", rows)
    lines.append(f"  an award not held costs {programs.failure_usd_per_mw_h:,.0f} $/MW-h")
    if not programs.ers:
        lines.append("  ERS: no contract period")
    for entry in programs.ers:
        lines.append(
            f"  {entry.product}: {entry.start.isoformat()} up to {entry.end.isoformat()},"
            f" {entry.mw:g} MW at {entry.usd_per_mw_h:g} $/MW-h"
        )
    months = ", ".join(str(month) for month in programs.cp_months) or "none"
    lines.append(f"  4CP: the system peaks of months {months} set next year's transmission charge")
    lines.append(f"       {_cp_rate(programs, rates_file)}")
    return lines


def _cp_rate(programs: ProgramSettings, rates_file: Path) -> str:
    if programs.transmission_usd_per_kw_year is not None:
        return f"rate {programs.transmission_usd_per_kw_year:g} $/kW-yr, from the site file"
    try:
        rates = read_transmission_rates(rates_file)
    except RecordedDataError as error:
        return f"no rate: the bundled rates cannot be read ({error})"
    known = ", ".join(
        f"{rate.usd_per_kw_year:.3f} in {rate.charge_year}"
        + (" (not final)" if "not final" in rate.status else "")
        for rate in rates.rates
    )
    return f"rate of the year billed, $/kW-yr (bundled rates file): {known}"


def _table(
    headers: Sequence[str], align: str, rows: Sequence[Sequence[str]], *, header: bool = True
) -> list[str]:
    """Rows indented by two spaces, each column padded to its widest cell; `align` holds one
    format alignment character ('<' or '>') per column."""
    shown = [list(headers), *rows] if header else list(rows)
    widths = [max(len(row[column]) for row in shown) for column in range(len(headers))]
    lines = []
    for row in shown:
        cells = (f"{cell:{a}{w}}" for cell, a, w in zip(row, align, widths, strict=True))
        lines.append(("  " + "  ".join(cells)).rstrip())
    return lines


def _mw(watts: float) -> str:
    return f"{watts / 1e6:.3f} MW"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, got {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _minutes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of minutes: {text}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be zero or more minutes, got {text}")
    return value


if __name__ == "__main__":
    raise SystemExit(main())
