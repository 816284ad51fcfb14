"""The SLA ledger: what the daemon must not forget across a restart, in one SQLite file.

It holds the curtailed node-hours of every contract per billing month (the allowance the planner
paces), the interruption events still running and since when, the plans and commands with their
reasons, and the latest command per group (what the daemon republishes after a restart); for
the grid programs, the reserve awards per product and hour (obligations a restart keeps), the
deployments and whether they were recalled, and ERCOT's hourly system load as heard (the 4CP
forecaster reads two weeks of it).

Every public write is one transaction, committed with `synchronous=FULL` in WAL mode: once a
write method returns, the write survives a killed process or a power cut. Timestamps are stored
as ISO 8601 UTC text and come back as aware UTC datetimes; payloads and summaries are stored as
JSON, so they come back as JSON types (a tuple comes back as a list).

Calls are blocking. The daemon runs them off the event loop (`asyncio.to_thread`), so the
connection may be used from any thread, but the caller must serialise the calls: one at a time.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Self

from gridpilot.agent.planner import month_end, month_start

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE allowance (
    month TEXT NOT NULL,  -- first day of the UTC billing month, 'YYYY-MM-01'
    contract TEXT NOT NULL,
    node_hours REAL NOT NULL CHECK (node_hours >= 0),
    PRIMARY KEY (month, contract)
);
CREATE TABLE interruptions (
    id INTEGER PRIMARY KEY,
    contract TEXT NOT NULL,
    group_name TEXT NOT NULL,
    start_at TEXT NOT NULL,
    nodes INTEGER NOT NULL CHECK (nodes > 0),
    reason TEXT NOT NULL,
    end_at TEXT
);
CREATE INDEX interruptions_open ON interruptions (end_at);
CREATE TABLE plans (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    objective_usd REAL NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX plans_at ON plans (at);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY,
    at TEXT NOT NULL,
    -- A command outlives the pruning of an older plan it came from.
    plan_id INTEGER REFERENCES plans (id) ON DELETE SET NULL,
    kind TEXT NOT NULL,
    group_name TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX commands_at ON commands (at);
CREATE INDEX commands_plan ON commands (plan_id);
CREATE TABLE current_setpoints (
    kind TEXT NOT NULL,
    group_name TEXT NOT NULL,
    at TEXT NOT NULL,
    payload TEXT NOT NULL,
    reason TEXT NOT NULL,
    PRIMARY KEY (kind, group_name)
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Version 2: the grid programs. A version-1 ledger gets these tables on opening.
_PROGRAMS_SCHEMA = """
CREATE TABLE awards (
    product TEXT NOT NULL,
    hour TEXT NOT NULL,  -- the hour's start
    mw REAL NOT NULL CHECK (mw >= 0),
    usd_per_mw_h REAL NOT NULL,
    received_at TEXT NOT NULL,
    PRIMARY KEY (product, hour)
);
CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    product TEXT NOT NULL,
    mw REAL NOT NULL,
    start_at TEXT NOT NULL,
    units TEXT NOT NULL,  -- JSON: miners held asleep per group
    source TEXT NOT NULL,
    reason TEXT NOT NULL,
    dropped_watts REAL NOT NULL,
    recalled_at TEXT
);
CREATE INDEX deployments_open ON deployments (recalled_at);
CREATE TABLE system_load (
    hour TEXT PRIMARY KEY,  -- the hour's start
    mw_sum REAL NOT NULL,
    readings INTEGER NOT NULL CHECK (readings > 0)
);
"""
# Hours of system load kept: the 4CP forecaster reads the month so far and the two weeks before.
SYSTEM_LOAD_KEEP = timedelta(days=62)

_DISK_FIX = "check the disk and permissions of the ledger's directory"


ACCOUNTED_UNTIL = "allowance_accounted_until"  # meta: the end of the last allowance accounting


class LedgerError(Exception):
    """The ledger file cannot be opened or written; the message names the file and a fix."""

    def __init__(self, path: Path, problem: str, fix: str) -> None:
        super().__init__(path, problem, fix)
        self.path = path
        self.problem = problem
        self.fix = fix

    def __str__(self) -> str:
        return f"ledger {self.path}: {self.problem}; {self.fix}"


@dataclass(frozen=True, slots=True)
class Interruption:
    """One curtailment event of a contract's nodes; `end` is None while it is still running."""

    id: int
    contract: str
    group: str
    start: datetime
    nodes: int
    reason: str
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class CommandRecord:
    """One command sent to a group: `kind` says which actuator ('asic', 'gpu'), `payload` what
    it was told (JSON-serialisable), `reason` why."""

    kind: str
    group: str
    payload: Mapping[str, object]
    reason: str


@dataclass(frozen=True, slots=True)
class RecordedPlan:
    """A plan as the ledger holds it."""

    id: int
    at: datetime
    status: str
    reason: str
    objective_usd: float
    summary: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class RecordedCommand:
    """A command as the ledger holds it: when, from which plan (None if unknown or pruned)."""

    at: datetime
    plan_id: int | None
    command: CommandRecord


@dataclass(frozen=True, slots=True)
class DeploymentRecord:
    """A reserve deployment carried out: `units` miners per group held asleep for it;
    `recalled` is None while it holds."""

    id: str
    product: str
    mw: float
    start: datetime
    units: Mapping[str, int]
    source: str
    reason: str
    dropped_watts: float = 0.0  # what the miners put to sleep drew
    recalled: datetime | None = None


class _Book:
    """The open connection and its transactions: what the ledger's parts below share."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        """Wrap an already prepared connection; `Ledger.open` is the way to get one."""
        self._conn = connection
        self.path = path

    @contextmanager
    def _write(self, action: str) -> Iterator[None]:
        """One transaction: committed on success, rolled back on any exception."""
        with self._read(action), self._conn:
            yield

    @contextmanager
    def _read(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise LedgerError(self.path, f"{action} failed ({exc})", _DISK_FIX) from exc


class _AllowanceRecords(_Book):
    """Allowance used per contract and billing month, and the interruptions that use it."""

    def add_allowance(self, contract: str, period_start: datetime, node_hours: float) -> None:
        """Add curtailed `node_hours` to `contract`'s use in the UTC billing month that contains
        `period_start`."""
        if not math.isfinite(node_hours) or node_hours < 0:
            raise ValueError(f"node_hours must be finite and not negative, got {node_hours}")
        month = _month_key(period_start)
        with self._write("add allowance"):
            self._conn.execute(
                "INSERT INTO allowance (month, contract, node_hours) VALUES (?, ?, ?)"
                " ON CONFLICT (month, contract)"
                " DO UPDATE SET node_hours = node_hours + excluded.node_hours",
                (month, contract, node_hours),
            )

    def account_allowance(self, curtailed_nodes: Mapping[str, int], until: datetime) -> bool:
        """Charge each contract the node-hours its `curtailed_nodes` (nodes per contract, as
        they stood since the last accounting) used from the mark of the last accounting to
        `until`, split at billing months' ends, and move the mark to `until`: all in one
        transaction, so a crash loses neither the hours nor the mark without the other. The
        first accounting only sets the mark; an `until` at or before the mark (the clock
        stepped back) charges nothing and keeps the mark, so no span is charged twice. True
        when hours were charged."""
        if any(nodes < 0 for nodes in curtailed_nodes.values()):
            raise ValueError(f"curtailed nodes must not be negative, got {dict(curtailed_nodes)}")
        until = _utc(until)
        with self._write("account allowance"):
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = ?", (ACCOUNTED_UNTIL,)
            ).fetchone()
            last = None if row is None else datetime.fromisoformat(str(row[0]))
            if last is not None and until <= last:
                return False
            if last is not None:
                start = last
                while start < until:
                    end = min(until, month_end(start))
                    hours = (end - start).total_seconds() / 3_600.0
                    self._conn.executemany(
                        "INSERT INTO allowance (month, contract, node_hours) VALUES (?, ?, ?)"
                        " ON CONFLICT (month, contract)"
                        " DO UPDATE SET node_hours = node_hours + excluded.node_hours",
                        [
                            (_month_key(start), contract, nodes * hours)
                            for contract, nodes in curtailed_nodes.items()
                            if nodes
                        ],
                    )
                    start = end
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (ACCOUNTED_UNTIL, until.isoformat()),
            )
        return last is not None

    def used_node_hours(self, moment: datetime) -> dict[str, float]:
        """Node-hours used by each contract in the UTC billing month that contains `moment`;
        a contract with nothing recorded that month is absent."""
        month = _month_key(moment)
        with self._read("read allowance"):
            rows = self._conn.execute(
                "SELECT contract, node_hours FROM allowance WHERE month = ?", (month,)
            ).fetchall()
        return {contract: float(hours) for contract, hours in rows}

    # Interruptions

    def open_interruption(
        self, contract: str, group: str, start: datetime, nodes: int, reason: str
    ) -> int:
        """Record that `nodes` nodes of `group`, serving `contract`, are interrupted from
        `start`; returns the event's id for `close_interruption`."""
        if nodes <= 0:
            raise ValueError(f"an interruption takes at least one node, got {nodes}")
        start_text = _to_text(start)
        with self._write("open interruption"):
            cursor = self._conn.execute(
                "INSERT INTO interruptions (contract, group_name, start_at, nodes, reason)"
                " VALUES (?, ?, ?, ?, ?)",
                (contract, group, start_text, nodes, reason),
            )
        return _row_id(cursor)

    def close_interruption(self, event_id: int, end: datetime) -> None:
        """Record that the interruption `event_id` ended at `end`.

        Raises ValueError if no open interruption has that id or `end` is before its start.
        """
        end_text = _to_text(end)
        with self._write("close interruption"):
            row = self._conn.execute(
                "SELECT start_at FROM interruptions WHERE id = ? AND end_at IS NULL", (event_id,)
            ).fetchone()
            if row is None:
                raise ValueError(f"no open interruption with id {event_id}")
            if _from_text(row[0]) > _from_text(end_text):
                raise ValueError(f"interruption {event_id} cannot end before it started")
            self._conn.execute(
                "UPDATE interruptions SET end_at = ? WHERE id = ?", (end_text, event_id)
            )

    def open_interruptions(self) -> list[Interruption]:
        """The interruptions still running, oldest first."""
        with self._read("read interruptions"):
            rows = self._conn.execute(
                "SELECT id, contract, group_name, start_at, nodes, reason FROM interruptions"
                " WHERE end_at IS NULL ORDER BY start_at, id"
            ).fetchall()
        return [
            Interruption(
                id=event_id,
                contract=contract,
                group=group,
                start=_from_text(start),
                nodes=nodes,
                reason=reason,
            )
            for event_id, contract, group, start, nodes, reason in rows
        ]


class _DecisionRecords(_Book):
    """Plans and commands with their reasons, the latest command per group, and their
    retention."""

    def record_plan(
        self,
        at: datetime,
        status: str,
        reason: str,
        objective_usd: float,
        summary: Mapping[str, object],
    ) -> int:
        """Record a plan decided at `at`; returns its id for `record_commands`.

        `summary` must be JSON-serialisable; a non-finite objective is a ValueError (SQLite
        would silently store NaN as NULL).
        """
        if not math.isfinite(objective_usd):
            raise ValueError(f"objective_usd must be finite, got {objective_usd}")
        row = (_to_text(at), status, reason, objective_usd, _to_json(summary))
        with self._write("record plan"):
            cursor = self._conn.execute(
                "INSERT INTO plans (at, status, reason, objective_usd, summary)"
                " VALUES (?, ?, ?, ?, ?)",
                row,
            )
        return _row_id(cursor)

    def record_commands(
        self, at: datetime, plan_id: int | None, commands: Sequence[CommandRecord]
    ) -> None:
        """Record commands sent at `at` (from plan `plan_id`, if any) in the history, and make
        each the current setpoint of its (kind, group).

        The last recorded command per (kind, group) is current, whatever its `at`: it is what
        the devices were last told, even if the wall clock stepped back in between.
        """
        at_text = _to_text(at)
        rows = [
            (at_text, plan_id, c.kind, c.group, _to_json(c.payload), c.reason) for c in commands
        ]
        with self._write("record commands"):
            if (
                plan_id is not None
                and self._conn.execute("SELECT 1 FROM plans WHERE id = ?", (plan_id,)).fetchone()
                is None
            ):
                raise ValueError(f"no plan with id {plan_id} in the ledger")
            self._conn.executemany(
                "INSERT INTO commands (at, plan_id, kind, group_name, payload, reason)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._conn.executemany(
                "INSERT INTO current_setpoints (at, kind, group_name, payload, reason)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, group_name) DO UPDATE SET"
                " at = excluded.at, payload = excluded.payload, reason = excluded.reason",
                [(when, kind, group, payload, why) for when, _, kind, group, payload, why in rows],
            )

    def current_setpoints(self) -> dict[tuple[str, str], Mapping[str, object]]:
        """The payload last commanded to each (kind, group)."""
        with self._read("read setpoints"):
            rows = self._conn.execute(
                "SELECT kind, group_name, payload FROM current_setpoints"
            ).fetchall()
        return {(kind, group): _from_json(payload, self.path) for kind, group, payload in rows}

    def plans(self, start: datetime, end: datetime) -> list[RecordedPlan]:
        """The plans recorded at `start` <= at < `end`, oldest first."""
        with self._read("read plans"):
            rows = self._conn.execute(
                "SELECT id, at, status, reason, objective_usd, summary FROM plans"
                " WHERE at >= ? AND at < ? ORDER BY at, id",
                (_to_text(start), _to_text(end)),
            ).fetchall()
        return [
            RecordedPlan(
                id=plan_id,
                at=_from_text(at),
                status=status,
                reason=reason,
                objective_usd=float(objective),
                summary=_from_json(summary, self.path),
            )
            for plan_id, at, status, reason, objective, summary in rows
        ]

    def commands(self, start: datetime, end: datetime) -> list[RecordedCommand]:
        """The commands recorded at `start` <= at < `end`, in the order they were recorded."""
        with self._read("read commands"):
            rows = self._conn.execute(
                "SELECT at, plan_id, kind, group_name, payload, reason FROM commands"
                " WHERE at >= ? AND at < ? ORDER BY at, id",
                (_to_text(start), _to_text(end)),
            ).fetchall()
        return [
            RecordedCommand(
                at=_from_text(at),
                plan_id=plan_id,
                command=CommandRecord(kind, group, _from_json(payload, self.path), reason),
            )
            for at, plan_id, kind, group, payload, reason in rows
        ]

    # Retention

    def prune(self, before: datetime) -> int:
        """Delete plans, commands, closed interruptions, awards for hours and recalled
        deployments older than `before`; returns the number of rows deleted.

        Allowance, current setpoints, open interruptions and deployments are never deleted:
        they are what a restart needs. A closed interruption counts as old once it ended
        before `before`. The system load keeps its own span (`record_system_load`).
        Freed pages are reused, so the file stays bounded without a VACUUM.
        """
        cutoff = _to_text(before)
        with self._write("prune"):
            # Commands first: deleting a plan would otherwise first rewrite the plan_id of
            # commands about to be deleted anyway.
            deleted = self._conn.execute("DELETE FROM commands WHERE at < ?", (cutoff,)).rowcount
            deleted += self._conn.execute("DELETE FROM plans WHERE at < ?", (cutoff,)).rowcount
            deleted += self._conn.execute(
                "DELETE FROM interruptions WHERE end_at IS NOT NULL AND end_at < ?", (cutoff,)
            ).rowcount
            deleted += self._conn.execute("DELETE FROM awards WHERE hour < ?", (cutoff,)).rowcount
            deleted += self._conn.execute(
                "DELETE FROM deployments WHERE recalled_at IS NOT NULL AND recalled_at < ?",
                (cutoff,),
            ).rowcount
        return deleted


class _ProgramRecords(_Book):
    """The grid programs: reserve awards per product and hour, deployments and their
    recalls, and ERCOT's hourly system load as heard."""

    def record_awards(
        self, product: str, hours: Sequence[tuple[datetime, float, float]], received: datetime
    ) -> None:
        """Record `product`'s award for each (hour start, MW, $/MW-h); a later award for an
        hour replaces the earlier one (the QSE sends what is owed, not what is added)."""
        rows = [(product, _to_text(h), mw, usd, _to_text(received)) for h, mw, usd in hours]
        with self._write("record awards"):
            self._conn.executemany(
                "INSERT INTO awards (product, hour, mw, usd_per_mw_h, received_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (product, hour) DO UPDATE SET"
                " mw = excluded.mw, usd_per_mw_h = excluded.usd_per_mw_h,"
                " received_at = excluded.received_at",
                rows,
            )

    def awards(self, since: datetime) -> list[tuple[str, datetime, float, float]]:
        """(product, hour start, MW, $/MW-h) of every award for an hour from `since` on."""
        with self._read("read awards"):
            rows = self._conn.execute(
                "SELECT product, hour, mw, usd_per_mw_h FROM awards WHERE hour >= ?"
                " ORDER BY product, hour",
                (_to_text(since),),
            ).fetchall()
        return [(p, _from_text(h), float(mw), float(usd)) for p, h, mw, usd in rows]

    def open_deployment(self, record: DeploymentRecord) -> None:
        """Record a deployment carried out (its id once: a repeated id is a ValueError)."""
        row = (
            record.id,
            record.product,
            record.mw,
            _to_text(record.start),
            _to_json(record.units),
            record.source,
            record.reason,
            record.dropped_watts,
        )
        with self._write("open deployment"):
            try:
                self._conn.execute(
                    "INSERT INTO deployments"
                    " (id, product, mw, start_at, units, source, reason, dropped_watts)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
            except sqlite3.IntegrityError as exc:
                raise ValueError(f"deployment {record.id!r} is already recorded") from exc

    def close_deployment(self, deployment_id: str, recalled: datetime) -> None:
        """Record that deployment `deployment_id` was recalled at `recalled` (again: no change)."""
        with self._write("close deployment"):
            self._conn.execute(
                "UPDATE deployments SET recalled_at = ? WHERE id = ? AND recalled_at IS NULL",
                (_to_text(recalled), deployment_id),
            )

    def deployments(self, since: datetime) -> list[DeploymentRecord]:
        """The deployments still holding, and those recalled from `since` on, oldest first."""
        with self._read("read deployments"):
            rows = self._conn.execute(
                "SELECT id, product, mw, start_at, units, source, reason, dropped_watts,"
                " recalled_at"
                " FROM deployments WHERE recalled_at IS NULL OR recalled_at >= ?"
                " ORDER BY start_at, id",
                (_to_text(since),),
            ).fetchall()
        return [
            DeploymentRecord(
                id=deployment_id,
                product=product,
                mw=float(mw),
                start=_from_text(start),
                units=_units(units, self.path),
                source=source,
                reason=reason,
                dropped_watts=float(dropped),
                recalled=_from_text(recalled) if recalled is not None else None,
            )
            for deployment_id, product, mw, start, units, source, reason, dropped, recalled in rows
        ]

    def record_system_load(self, hour: datetime, mw_sum: float, readings: int) -> None:
        """Keep the hour starting `hour` as `readings` readings summing to `mw_sum`; hours
        older than `SYSTEM_LOAD_KEEP` before it are let go."""
        if not math.isfinite(mw_sum) or readings <= 0:
            raise ValueError(
                f"a load hour needs a finite sum and readings, got {mw_sum}, {readings}"
            )
        with self._write("record system load"):
            self._conn.execute(
                "INSERT INTO system_load (hour, mw_sum, readings) VALUES (?, ?, ?)"
                " ON CONFLICT (hour) DO UPDATE SET mw_sum = excluded.mw_sum,"
                " readings = excluded.readings",
                (_to_text(hour), mw_sum, readings),
            )
            self._conn.execute(
                "DELETE FROM system_load WHERE hour < ?", (_to_text(hour - SYSTEM_LOAD_KEEP),)
            )

    def system_load(self) -> list[tuple[datetime, float, int]]:
        """(hour start, sum of readings, readings) of every hour kept, oldest first."""
        with self._read("read system load"):
            rows = self._conn.execute(
                "SELECT hour, mw_sum, readings FROM system_load ORDER BY hour"
            ).fetchall()
        return [(_from_text(h), float(total), int(count)) for h, total, count in rows]


class Ledger(_AllowanceRecords, _DecisionRecords, _ProgramRecords):
    """The daemon's durable memory. Open it with `Ledger.open`; close it, or use it as a
    context manager. Not safe for concurrent calls: the caller serialises them.

    Its methods come in three parts over the one connection: the allowance and the
    interruptions behind it (`_AllowanceRecords`), the plans and commands with the latest
    command per group (`_DecisionRecords`), and the grid programs' awards, deployments and
    system load (`_ProgramRecords`); this class opens, closes and keeps the meta."""

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open the ledger at `path`, creating its directory and schema if need be.

        Raises `LedgerError` if the directory cannot be created, the file is not a SQLite
        database or not a gridpilot ledger, or it was written by a newer schema.
        """
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LedgerError(
                path, f"cannot create its directory ({exc})", "choose a writable ledger path"
            ) from exc
        try:
            # The daemon calls the ledger from a worker thread (asyncio.to_thread); sqlite3's
            # own same-thread check would refuse that, so serialising calls is the caller's job.
            connection = sqlite3.connect(path, check_same_thread=False)
        except sqlite3.Error as exc:
            raise LedgerError(
                path, f"cannot open it ({exc})", "point the ledger at a file, not a directory"
            ) from exc
        try:
            _prepare(connection, path)
        except LedgerError:
            connection.close()
            raise
        except sqlite3.Error as exc:
            connection.close()
            raise LedgerError(
                path,
                f"not a usable SQLite database ({exc})",
                "move the file aside or point the ledger at another path",
            ) from exc
        return cls(connection, path)

    def close(self) -> None:
        """Close the file; further calls raise `LedgerError`. Closing twice is harmless."""
        self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # Meta

    def set_meta(self, key: str, value: str) -> None:
        """Set a small bookkeeping value, such as when allowance was last accounted."""
        with self._write("set meta"):
            self._conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def get_meta(self, key: str) -> str | None:
        """The value set for `key`, or None if it was never set."""
        with self._read("read meta"):
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])


def _prepare(connection: sqlite3.Connection, path: Path) -> None:
    """Set the durability pragmas and create or check the schema."""
    # WAL with FULL sync: a commit is on disk when it returns, and readers never block the
    # writer. Both are per connection, so they are set on every open.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise LedgerError(
            path,
            f"written by a newer gridpilot (schema {version}, this one knows {SCHEMA_VERSION})",
            "upgrade gridpilot, or point the ledger at another file",
        )
    if version == SCHEMA_VERSION:
        return
    if version == 1:
        # A ledger from before the grid programs: their tables are added, the rest is kept.
        connection.executescript(
            f"BEGIN; {_PROGRAMS_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )
        return
    if connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        # Version 0 with tables in it is some other program's database: adding ours would
        # mix the two.
        raise LedgerError(
            path,
            "a SQLite database but not a gridpilot ledger",
            "point the ledger at another path",
        )
    # executescript commits on its own, so the version is set in the same script: a crash
    # between the two cannot leave a schema without its version.
    connection.executescript(
        f"BEGIN; {_SCHEMA} {_PROGRAMS_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"the ledger needs timezone-aware datetimes, got naive {moment}")
    return moment.astimezone(UTC)


def _to_text(moment: datetime) -> str:
    # Fixed width (always microseconds, always +00:00) so that text order is time order,
    # which the range queries and prune rely on.
    return _utc(moment).isoformat(timespec="microseconds")


def _from_text(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _month_key(moment: datetime) -> str:
    return month_start(_utc(moment)).date().isoformat()


def _to_json(value: Mapping[str, object]) -> str:
    # Strict JSON: NaN or infinity would be written but could not be read by other tools.
    return json.dumps(dict(value), sort_keys=True, allow_nan=False, separators=(",", ":"))


def _from_json(text: str, path: Path) -> dict[str, object]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise LedgerError(path, "a stored payload is not a JSON object", "restore from a backup")
    return value


def _units(text: str, path: Path) -> dict[str, int]:
    stored = _from_json(text, path)
    units = {group: n for group, n in stored.items() if isinstance(n, int)}
    if len(units) != len(stored):
        raise LedgerError(path, "a deployment's units are not counts", "restore from a backup")
    return units


def _row_id(cursor: sqlite3.Cursor) -> int:
    # An INSERT into a rowid table always sets lastrowid; None would mean a bug here.
    assert cursor.lastrowid is not None
    return cursor.lastrowid
