"""A study's results folder: every scenario's row as it arrives, and the tables of them.

- `results.jsonl`: one JSON object per line per scenario run into the folder, appended and
  flushed to disk as each task finishes. A line cut short by a crash is dropped on reading
  (and its scenario run again); a later row of a key wins over an earlier one. Payback is
  `Infinity` where a scenario makes no profit (Python's JSON).
- `results.parquet` and `results.csv`: the rows of the study's own scenarios, one each, in
  the grid's order; rewritten whole (a temporary file, then renamed) after each task and at
  the end, so neither is ever seen half-written.

A re-run skips every scenario whose key has an `ok` row; failed ones are run again.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from gridpilot.agent.study.batches import Row

JOURNAL = "results.jsonl"
PARQUET = "results.parquet"
CSV = "results.csv"
# The columns that lead the tables; the inputs and figures follow in the rows' own order.
LEADING = ("key", "status", "error")
TRAILING = ("attempts", "wall_s")


class ResultsStore:
    """The folder's rows by key, read at start and appended to as tasks finish."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.journal = folder / JOURNAL
        self.rows: dict[str, Row] = {}
        if self.journal.exists():
            self._read()

    def _read(self) -> None:
        text = self.journal.read_text()
        if text and not text.endswith("\n"):
            # A line cut short by a crash: cut it off, or the next row would be appended to it.
            whole = text[: text.rfind("\n") + 1]
            with self.journal.open("r+") as journal:
                journal.truncate(len(whole.encode()))
            text = whole
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("key"), str):
                self.rows[row["key"]] = row

    def ok_keys(self) -> set[str]:
        """The keys with figures: what a re-run skips."""
        return {key for key, row in self.rows.items() if row.get("status") == "ok"}

    def append(self, rows: Iterable[Row]) -> None:
        """Add rows to the journal, on disk before this returns."""
        lines = []
        for row in rows:
            self.rows[str(row["key"])] = row
            lines.append(json.dumps(row) + "\n")
        with self.journal.open("a") as journal:
            journal.write("".join(lines))
            journal.flush()
            os.fsync(journal.fileno())

    def table_rows(self, keys: Sequence[str]) -> list[Row]:
        """The rows of `keys` that have results, in that order."""
        return [self.rows[key] for key in keys if key in self.rows]

    def write_tables(self, keys: Sequence[str]) -> None:
        """`results.parquet` and `results.csv` of the rows of `keys`."""
        import pyarrow as pa  # noqa: PLC0415 - a second to import; only a study needs it
        import pyarrow.csv as pa_csv  # noqa: PLC0415
        import pyarrow.parquet as pq  # noqa: PLC0415

        rows = self.table_rows(keys)
        table = pa.table({name: [row.get(name) for row in rows] for name in columns(rows)})
        _replace(self.folder / PARQUET, lambda path: pq.write_table(table, path))
        _replace(self.folder / CSV, lambda path: pa_csv.write_csv(table, path))


def columns(rows: Sequence[Row]) -> list[str]:
    """Every field of the rows: key and status first, then as they first appear."""
    seen: dict[str, None] = dict.fromkeys(LEADING)
    for row in rows:
        seen.update(dict.fromkeys(name for name in row if name not in TRAILING))
    return [*seen, *TRAILING]


def read_table(path: Path) -> list[Row]:
    """The rows of a `results.parquet`."""
    import pyarrow.parquet as pq  # noqa: PLC0415

    rows: list[Row] = pq.read_table(path).to_pylist()
    return rows


def _replace(path: Path, write: Callable[[str], None]) -> None:
    """Write through a temporary file beside `path`, then rename it over `path`."""
    partial = path.with_name(f".{path.name}.partial")
    write(str(partial))
    partial.replace(path)
