"""The SLA ledger: what the daemon writes survives a close, a restart and a SIGKILL."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from gridpilot.agent.daemon.ledger import (
    SCHEMA_VERSION,
    CommandRecord,
    DeploymentRecord,
    Interruption,
    Ledger,
    LedgerError,
    RecordedCommand,
)

NOV = datetime(2024, 11, 20, 12, tzinfo=UTC)
DEC = datetime(2024, 12, 3, 8, tzinfo=UTC)
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """A fresh ledger in its own directory, closed after the test."""
    with Ledger.open(tmp_path / "ledger.sqlite") as opened:
        yield opened


def test_open_creates_directories_and_durable_pragmas(tmp_path: Path) -> None:
    """Opening creates missing parent directories, WAL mode and FULL sync, and the schema's
    version."""
    path = tmp_path / "var" / "lib" / "gridpilot" / "ledger.sqlite"
    with Ledger.open(path) as ledger:
        assert path.is_file()
        # synchronous is per connection, so only the ledger's own connection can show it.
        assert ledger._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()


def test_allowance_accumulates_per_contract_and_month(ledger: Ledger) -> None:
    """Node-hours added to one contract in one month add up; contracts are kept apart."""
    ledger.add_allowance("flex", NOV, 2.5)
    ledger.add_allowance("flex", NOV + timedelta(days=3), 1.5)
    ledger.add_allowance("pause", NOV, 4.0)
    assert ledger.used_node_hours(NOV) == pytest.approx({"flex": 4.0, "pause": 4.0})


def test_month_rollover_starts_empty(ledger: Ledger) -> None:
    """November's use and December's are kept apart: a December moment sees only December."""
    ledger.add_allowance("flex", NOV, 10.0)
    assert ledger.used_node_hours(DEC) == {}
    ledger.add_allowance("flex", DEC, 3.0)
    assert ledger.used_node_hours(DEC) == pytest.approx({"flex": 3.0})
    assert ledger.used_node_hours(NOV) == pytest.approx({"flex": 10.0})
    assert ledger.used_node_hours(datetime(2024, 11, 30, 23, 59, 59, tzinfo=UTC)) == (
        pytest.approx({"flex": 10.0})
    )


def test_billing_months_are_utc_months(ledger: Ledger) -> None:
    """A moment given in another timezone counts in the UTC month it falls in."""
    plus_one = timezone(timedelta(hours=1))
    # 00:30 on 1 December at UTC+1 is still 30 November in UTC.
    ledger.add_allowance("flex", datetime(2024, 12, 1, 0, 30, tzinfo=plus_one), 1.0)
    assert ledger.used_node_hours(NOV) == pytest.approx({"flex": 1.0})
    assert ledger.used_node_hours(DEC) == {}


@pytest.mark.parametrize("hours", [-0.5, float("nan"), float("inf")])
def test_allowance_rejects_negative_and_non_finite(ledger: Ledger, hours: float) -> None:
    """Negative or non-finite node-hours are a ValueError and change nothing."""
    with pytest.raises(ValueError, match="node_hours"):
        ledger.add_allowance("flex", NOV, hours)
    assert ledger.used_node_hours(NOV) == {}


def test_naive_datetimes_are_rejected(ledger: Ledger) -> None:
    """Every method taking a time refuses a naive datetime."""
    naive = datetime(2024, 11, 20, 12)
    with pytest.raises(ValueError, match="naive"):
        ledger.add_allowance("flex", naive, 1.0)
    with pytest.raises(ValueError, match="naive"):
        ledger.used_node_hours(naive)
    with pytest.raises(ValueError, match="naive"):
        ledger.open_interruption("flex", "gpu-a", naive, 2, "price")
    with pytest.raises(ValueError, match="naive"):
        ledger.record_plan(naive, "optimal", "price", 1.0, {})
    with pytest.raises(ValueError, match="naive"):
        ledger.record_commands(naive, None, [])
    with pytest.raises(ValueError, match="naive"):
        ledger.prune(naive)


def test_accounting_charges_each_span_once_when_the_clock_steps_back(ledger: Ledger) -> None:
    """Accounted at 10:00 (the mark), 11:00, then 10:30 (the clock stepped back an hour's
    half) and 11:30, with two nodes curtailed throughout: 10:00 to 11:30 is charged once, 3
    node-hours. (Before, the step back moved the mark to 10:30 and 10:30-11:00 was charged
    twice.)"""
    at = NOV.replace(hour=10)
    assert not ledger.account_allowance({"flex": 2}, at)  # the first only sets the mark
    assert ledger.account_allowance({"flex": 2}, at + timedelta(hours=1))
    assert not ledger.account_allowance({"flex": 2}, at + timedelta(minutes=30))
    assert ledger.account_allowance({"flex": 2}, at + timedelta(minutes=90))
    assert ledger.used_node_hours(at) == {"flex": pytest.approx(3.0)}


def test_accounting_splits_at_the_month_end(ledger: Ledger) -> None:
    """Curtailed from 23:00 on 30 November to 01:00 on 1 December: an hour to each month."""
    ledger.account_allowance({"flex": 1}, datetime(2024, 11, 30, 23, tzinfo=UTC))
    ledger.account_allowance({"flex": 1, "spot": 0}, datetime(2024, 12, 1, 1, tzinfo=UTC))
    assert ledger.used_node_hours(NOV) == {"flex": pytest.approx(1.0)}
    assert ledger.used_node_hours(DEC) == {"flex": pytest.approx(1.0)}


def test_accounting_is_one_transaction(ledger: Ledger, tmp_path: Path) -> None:
    """A failure while the hours are written (a trigger makes the insert fail, as a full disk
    would) leaves the mark where it was: the next accounting charges the whole span."""
    ledger.account_allowance({"flex": 1}, NOV)
    with sqlite3.connect(ledger.path) as other:
        other.execute(
            "CREATE TRIGGER fail_allowance BEFORE INSERT ON allowance"
            " BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    with pytest.raises(LedgerError, match="account allowance failed"):
        ledger.account_allowance({"flex": 1}, NOV + timedelta(hours=1))
    assert ledger.used_node_hours(NOV) == {}
    with sqlite3.connect(ledger.path) as other:
        other.execute("DROP TRIGGER fail_allowance")
    ledger.account_allowance({"flex": 1}, NOV + timedelta(hours=2))
    assert ledger.used_node_hours(NOV) == {"flex": pytest.approx(2.0)}


def test_interruptions_open_and_close(ledger: Ledger) -> None:
    """Open interruptions come back with their start, oldest first; a closed one no longer
    shows."""
    later = ledger.open_interruption("pause", "gpu-b", NOV + timedelta(hours=1), 4, "grid event")
    first = ledger.open_interruption("flex", "gpu-a", NOV, 2, "price")
    assert ledger.open_interruptions() == [
        Interruption(first, "flex", "gpu-a", NOV, 2, "price"),
        Interruption(later, "pause", "gpu-b", NOV + timedelta(hours=1), 4, "grid event"),
    ]
    ledger.close_interruption(first, NOV + timedelta(minutes=30))
    assert [i.id for i in ledger.open_interruptions()] == [later]


def test_interruption_times_come_back_as_utc(ledger: Ledger) -> None:
    """A start given in another timezone comes back as the same instant in UTC."""
    start = datetime(2024, 11, 20, 13, 15, 7, 250, tzinfo=timezone(timedelta(hours=1)))
    ledger.open_interruption("flex", "gpu-a", start, 1, "price")
    (stored,) = ledger.open_interruptions()
    assert stored.start == start
    assert stored.start.tzinfo is UTC


def test_closing_an_interruption_is_checked(ledger: Ledger) -> None:
    """Closing an unknown or already closed event, or ending it before its start, is a
    ValueError."""
    event = ledger.open_interruption("flex", "gpu-a", NOV, 2, "price")
    with pytest.raises(ValueError, match="before it started"):
        ledger.close_interruption(event, NOV - timedelta(seconds=1))
    with pytest.raises(ValueError, match="no open interruption"):
        ledger.close_interruption(event + 1, NOV)
    ledger.close_interruption(event, NOV + timedelta(hours=1))
    with pytest.raises(ValueError, match="no open interruption"):
        ledger.close_interruption(event, NOV + timedelta(hours=2))
    with pytest.raises(ValueError, match="at least one node"):
        ledger.open_interruption("flex", "gpu-a", NOV, 0, "price")


def test_plans_and_commands_round_trip(ledger: Ledger) -> None:
    """A plan's fields and summary and its commands' payloads come back as recorded."""
    summary: dict[str, object] = {"gap": 0.001, "solve_s": 1.5, "groups": ["a", "b"]}
    plan = ledger.record_plan(NOV, "optimal", "price spike", 1234.5, summary)
    commands = [
        CommandRecord("asic", "s19-a", {"units_on": 120}, "price above hash value"),
        CommandRecord("gpu", "h100-a", {"curtailed_nodes": 2, "cap": 0.7}, "grid event"),
    ]
    ledger.record_commands(NOV, plan, commands)

    (stored,) = ledger.plans(*EVER)
    assert (stored.id, stored.at, stored.status, stored.reason) == (
        plan,
        NOV,
        "optimal",
        "price spike",
    )
    assert stored.objective_usd == pytest.approx(1234.5)
    assert stored.summary == summary
    assert ledger.commands(*EVER) == [RecordedCommand(NOV, plan, c) for c in commands]


def test_commands_without_a_plan_and_unknown_plans(ledger: Ledger) -> None:
    """Commands need not come from a plan (the guard's do not), but an unknown plan id is a
    ValueError that records nothing."""
    ledger.record_commands(NOV, None, [CommandRecord("asic", "s19-a", {"units_on": 0}, "guard")])
    assert [c.plan_id for c in ledger.commands(*EVER)] == [None]
    with pytest.raises(ValueError, match="no plan with id 99"):
        ledger.record_commands(NOV, 99, [CommandRecord("asic", "s19-b", {"units_on": 0}, "x")])
    assert len(ledger.commands(*EVER)) == 1
    assert set(ledger.current_setpoints()) == {("asic", "s19-a")}


def test_plan_summary_must_be_strict_json(ledger: Ledger) -> None:
    """A summary with NaN or a non-finite objective is refused rather than stored unreadably."""
    with pytest.raises(ValueError, match="JSON"):
        ledger.record_plan(NOV, "optimal", "x", 1.0, {"gap": float("nan")})
    with pytest.raises(ValueError, match="objective_usd"):
        ledger.record_plan(NOV, "optimal", "x", float("nan"), {})
    assert ledger.plans(*EVER) == []


def test_current_setpoints_keep_the_latest_per_kind_and_group(ledger: Ledger) -> None:
    """The last command per (kind, group) is current, and the same group name under another
    kind is kept apart; the history keeps every command."""
    ledger.record_commands(
        NOV,
        None,
        [
            CommandRecord("asic", "row-1", {"units_on": 100}, "a"),
            CommandRecord("gpu", "row-1", {"curtailed_nodes": 0}, "b"),
        ],
    )
    ledger.record_commands(
        NOV + timedelta(minutes=15), None, [CommandRecord("asic", "row-1", {"units_on": 40}, "c")]
    )
    assert ledger.current_setpoints() == {
        ("asic", "row-1"): {"units_on": 40},
        ("gpu", "row-1"): {"curtailed_nodes": 0},
    }
    assert len(ledger.commands(*EVER)) == 3


def test_a_later_write_wins_even_with_an_earlier_timestamp(ledger: Ledger) -> None:
    """If the wall clock steps back, the command recorded last is still the current one: it is
    what the devices were last told."""
    ledger.record_commands(NOV, None, [CommandRecord("asic", "row-1", {"units_on": 100}, "a")])
    ledger.record_commands(
        NOV - timedelta(minutes=5), None, [CommandRecord("asic", "row-1", {"units_on": 7}, "b")]
    )
    assert ledger.current_setpoints() == {("asic", "row-1"): {"units_on": 7}}


def test_history_ranges_are_half_open(ledger: Ledger) -> None:
    """plans() and commands() return what was recorded at start <= at < end."""
    for minutes in (0, 15, 30):
        at = NOV + timedelta(minutes=minutes)
        plan = ledger.record_plan(at, "optimal", "x", float(minutes), {})
        ledger.record_commands(at, plan, [CommandRecord("asic", "a", {"m": minutes}, "x")])
    window = (NOV + timedelta(minutes=15), NOV + timedelta(minutes=30))
    assert [p.objective_usd for p in ledger.plans(*window)] == [15.0]
    assert [c.command.payload for c in ledger.commands(*window)] == [{"m": 15}]


def test_meta_round_trip(ledger: Ledger) -> None:
    """A meta value reads back as set, overwrites replace it, and an unset key is None."""
    assert ledger.get_meta("allowance_accounted_until") is None
    ledger.set_meta("allowance_accounted_until", NOV.isoformat())
    ledger.set_meta("allowance_accounted_until", DEC.isoformat())
    assert ledger.get_meta("allowance_accounted_until") == DEC.isoformat()


def test_reopen_after_close_keeps_everything(tmp_path: Path) -> None:
    """Everything written before close() is there after reopening the file."""
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path) as ledger:
        ledger.add_allowance("flex", NOV, 6.0)
        event = ledger.open_interruption("flex", "gpu-a", NOV, 3, "price")
        plan = ledger.record_plan(NOV, "optimal", "price", 10.0, {"k": "v"})
        ledger.record_commands(NOV, plan, [CommandRecord("gpu", "gpu-a", {"nodes": 3}, "price")])
        ledger.set_meta("k", "v")
    with Ledger.open(path) as ledger:
        assert ledger.used_node_hours(NOV) == pytest.approx({"flex": 6.0})
        assert ledger.open_interruptions() == [
            Interruption(event, "flex", "gpu-a", NOV, 3, "price")
        ]
        assert [p.id for p in ledger.plans(*EVER)] == [plan]
        assert len(ledger.commands(*EVER)) == 1
        assert ledger.current_setpoints() == {("gpu", "gpu-a"): {"nodes": 3}}
        assert ledger.get_meta("k") == "v"


def test_prune_drops_old_history_only(ledger: Ledger) -> None:
    """prune() deletes plans, commands and closed interruptions before the cut-off and keeps
    newer history, allowance, current setpoints and open interruptions."""
    old, new = NOV - timedelta(days=40), NOV
    ledger.add_allowance("flex", old, 5.0)
    still_open = ledger.open_interruption("flex", "gpu-a", old, 1, "price")
    closed = ledger.open_interruption("flex", "gpu-b", old, 1, "price")
    ledger.close_interruption(closed, old + timedelta(hours=1))
    old_plan = ledger.record_plan(old, "optimal", "x", 1.0, {})
    ledger.record_commands(old, old_plan, [CommandRecord("asic", "only-old", {"u": 1}, "x")])
    ledger.record_commands(old, old_plan, [CommandRecord("asic", "both", {"u": 2}, "x")])
    new_plan = ledger.record_plan(new, "optimal", "y", 2.0, {})
    ledger.record_commands(new, new_plan, [CommandRecord("asic", "both", {"u": 3}, "y")])

    assert ledger.prune(NOV - timedelta(days=30)) == 4  # 2 commands, 1 plan, 1 interruption

    assert ledger.used_node_hours(old) == pytest.approx({"flex": 5.0})
    assert ledger.current_setpoints() == {
        ("asic", "only-old"): {"u": 1},
        ("asic", "both"): {"u": 3},
    }
    assert [i.id for i in ledger.open_interruptions()] == [still_open]
    assert [p.id for p in ledger.plans(*EVER)] == [new_plan]
    assert [(c.plan_id, c.command.payload) for c in ledger.commands(*EVER)] == [
        (new_plan, {"u": 3})
    ]
    assert ledger.prune(NOV - timedelta(days=30)) == 0


def test_prune_keeps_commands_whose_plan_is_pruned(ledger: Ledger) -> None:
    """A command newer than the cut-off stays when its older plan goes; it loses the plan id."""
    plan = ledger.record_plan(NOV - timedelta(hours=1), "optimal", "x", 1.0, {})
    ledger.record_commands(NOV, plan, [CommandRecord("asic", "a", {"u": 1}, "x")])
    assert ledger.prune(NOV) == 1
    assert [c.plan_id for c in ledger.commands(*EVER)] == [None]


def test_usable_from_a_worker_thread(ledger: Ledger) -> None:
    """The daemon calls the ledger through asyncio.to_thread; that works from another thread."""

    async def write_and_read() -> dict[str, float]:
        await asyncio.to_thread(ledger.add_allowance, "flex", NOV, 1.0)
        return await asyncio.to_thread(ledger.used_node_hours, NOV)

    assert asyncio.run(write_and_read()) == pytest.approx({"flex": 1.0})


def test_closed_ledger_raises_ledger_error(tmp_path: Path) -> None:
    """Using a closed ledger is a LedgerError, and closing twice is harmless."""
    ledger = Ledger.open(tmp_path / "ledger.sqlite")
    ledger.close()
    ledger.close()
    with pytest.raises(LedgerError, match=r"ledger\.sqlite"):
        ledger.add_allowance("flex", NOV, 1.0)
    with pytest.raises(LedgerError, match=r"ledger\.sqlite"):
        ledger.used_node_hours(NOV)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A ledger written by a newer schema version is refused with the versions and a fix."""
    path = tmp_path / "ledger.sqlite"
    Ledger.open(path).close()
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(LedgerError, match="newer gridpilot") as caught:
        Ledger.open(path)
    assert str(path) in str(caught.value)
    assert "upgrade gridpilot" in str(caught.value)


def test_garbage_file_is_a_ledger_error(tmp_path: Path) -> None:
    """A file that is not a SQLite database is a LedgerError naming it, chained to sqlite's."""
    path = tmp_path / "ledger.sqlite"
    path.write_bytes(b"this is not a database, just some text that is long enough " * 100)
    with pytest.raises(LedgerError, match="not a usable SQLite database") as caught:
        Ledger.open(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)


def test_another_programs_database_is_refused(tmp_path: Path) -> None:
    """A SQLite database with unknown tables is not taken over as a ledger."""
    path = tmp_path / "other.sqlite"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE things (x)")
    raw.close()
    with pytest.raises(LedgerError, match="not a gridpilot ledger"):
        Ledger.open(path)


def test_uncreatable_directory_is_a_ledger_error(tmp_path: Path) -> None:
    """A parent that is a file cannot become a directory: LedgerError, chained to the OSError."""
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(LedgerError, match="cannot create its directory") as caught:
        Ledger.open(blocker / "sub" / "ledger.sqlite")
    assert isinstance(caught.value.__cause__, OSError)


def test_a_directory_is_not_a_ledger_file(tmp_path: Path) -> None:
    """Pointing the ledger at a directory is a LedgerError."""
    with pytest.raises(LedgerError, match=re.escape(str(tmp_path))):
        Ledger.open(tmp_path)


_WRITER = textwrap.dedent(
    """
    import sys
    from datetime import UTC, datetime, timedelta
    from pathlib import Path

    from gridpilot.agent.daemon.ledger import CommandRecord, Ledger

    ledger = Ledger.open(Path(sys.argv[1]))
    start = datetime(2024, 11, 1, tzinfo=UTC)
    i = 0
    while True:
        at = start + timedelta(seconds=i)
        ledger.add_allowance("flex", at, 1.0)
        sys.stdout.write(f"allowance {i}\\n")
        sys.stdout.flush()
        ledger.record_commands(at, None, [CommandRecord("gpu", f"g{i % 3}", {"i": i}, "test")])
        sys.stdout.write(f"command {i}\\n")
        sys.stdout.flush()
        i += 1
    """
)


def test_acknowledged_writes_survive_sigkill(tmp_path: Path) -> None:
    """Every write a process saw committed is in the ledger after it is killed with SIGKILL
    mid-stream, and the file passes SQLite's integrity check."""
    path = tmp_path / "ledger.sqlite"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # A fixed interpreter and script of ours, no shell: nothing untrusted reaches the call.
    writer = subprocess.Popen(  # noqa: S603
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=env,
    )
    acknowledged: list[tuple[str, int]] = []
    try:
        assert writer.stdout is not None
        while len(acknowledged) < 60:
            line = writer.stdout.readline()
            if not line:  # the writer died on its own: show why
                assert writer.stderr is not None
                pytest.fail(f"writer exited early: {writer.stderr.read()}")
            kind, number = line.split()
            acknowledged.append((kind, int(number)))
        # The writer is still going: the kill lands in the middle of some later write.
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.communicate()
    assert writer.returncode == -signal.SIGKILL

    allowances = sum(1 for kind, _ in acknowledged if kind == "allowance")
    commanded = {i for kind, i in acknowledged if kind == "command"}
    with Ledger.open(path) as ledger:
        # Writes after the last line read may have committed too, so at least, not exactly.
        assert ledger.used_node_hours(datetime(2024, 11, 1, tzinfo=UTC))["flex"] >= allowances
        stored = {c.command.payload["i"] for c in ledger.commands(*EVER)}
        assert commanded <= stored
        assert len(ledger.current_setpoints()) == 3
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        raw.close()


# --- the grid programs -------------------------------------------------------------------------

HOUR = timedelta(hours=1)


def test_awards_round_trip_and_a_later_award_replaces_an_hours(ledger: Ledger) -> None:
    """Awards come back per product and hour from a moment on; a second award for an hour
    replaces the first (the QSE sends what is owed)."""
    ledger.record_awards("RRS", [(NOV, 0.5, 4.0), (NOV + HOUR, 0.5, 4.0)], NOV)
    ledger.record_awards("RRS", [(NOV + HOUR, 0.8, 5.0)], NOV + HOUR)
    ledger.record_awards("ECRS", [(NOV, 0.2, 9.0)], NOV)
    assert ledger.awards(NOV) == [
        ("ECRS", NOV, 0.2, 9.0),
        ("RRS", NOV, 0.5, 4.0),
        ("RRS", NOV + HOUR, 0.8, 5.0),
    ]
    assert ledger.awards(NOV + HOUR) == [("RRS", NOV + HOUR, 0.8, 5.0)]


def test_deployments_open_close_and_are_recorded_once(ledger: Ledger) -> None:
    """A deployment holds until closed; closed, it is still listed from its recall on, not
    before; an id cannot be recorded twice."""
    record = DeploymentRecord("d-1", "RRS", 0.5, NOV, {"old-01": 10}, "qse", "why", 31_500.0)
    ledger.open_deployment(record)
    assert ledger.deployments(NOV) == [record]
    with pytest.raises(ValueError, match="already recorded"):
        ledger.open_deployment(record)
    ledger.close_deployment("d-1", NOV + HOUR)
    [closed] = ledger.deployments(NOV)
    assert closed.recalled == NOV + HOUR
    assert ledger.deployments(NOV + 2 * HOUR) == []


def test_system_load_keeps_its_last_two_months(ledger: Ledger) -> None:
    """An hour's sum and count are replaced as readings come; hours more than 62 days before
    the newest are let go."""
    ledger.record_system_load(NOV - timedelta(days=70), 40_000.0, 1)
    ledger.record_system_load(NOV, 50_000.0, 1)
    ledger.record_system_load(NOV, 101_000.0, 2)
    assert ledger.system_load() == [(NOV, 101_000.0, 2)]


def test_prune_drops_old_awards_and_recalled_deployments_only(ledger: Ledger) -> None:
    """Pruning lets go of awards for hours before the cutoff and deployments recalled before
    it; one still holding stays however old."""
    ledger.record_awards("RRS", [(NOV, 0.5, 4.0), (DEC, 0.5, 4.0)], NOV)
    for ident, recalled in (("old", NOV + HOUR), ("open", None)):
        ledger.open_deployment(DeploymentRecord(ident, "RRS", 0.5, NOV, {}, "qse", "why"))
        if recalled is not None:
            ledger.close_deployment(ident, recalled)
    ledger.prune(DEC - HOUR)
    assert ledger.awards(NOV) == [("RRS", DEC, 0.5, 4.0)]
    assert [d.id for d in ledger.deployments(NOV)] == ["open"]


def test_a_ledger_from_before_the_grid_programs_is_upgraded_in_place(tmp_path: Path) -> None:
    """A version-1 ledger opens with its records kept and the programs' tables added."""
    path = tmp_path / "ledger.sqlite"
    with Ledger.open(path) as ledger:
        ledger.add_allowance("flex", NOV, 2.5)
    raw = sqlite3.connect(path)
    raw.executescript(
        "DROP TABLE awards; DROP TABLE deployments; DROP TABLE system_load;"
        " PRAGMA user_version = 1;"
    )
    raw.close()
    with Ledger.open(path) as ledger:
        assert ledger.used_node_hours(NOV) == {"flex": 2.5}
        ledger.record_awards("RRS", [(NOV, 0.5, 4.0)], NOV)
        assert ledger.awards(NOV) == [("RRS", NOV, 0.5, 4.0)]
    raw = sqlite3.connect(path)
    try:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    finally:
        raw.close()
