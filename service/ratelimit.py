"""The per-caller rate limit: a hard memory bound and O(1) work per request, shared by a server's workers.

GCRA (the token bucket as one number): each caller has a "theoretical arrival time", the moment its bucket
would be full again. A request is allowed when that moment, pushed one interval later, is at most a minute
away; a caller whose moment has passed has a full bucket, so forgetting it loses nothing.

The table has a fixed number of slots, in sets of ``WAYS``: a caller (a 63-bit fingerprint of its name, so
a long name costs no memory) lives in one slot of the set its fingerprint picks. Every request reads that
set's 8 slots and writes at most one, however many callers there are; a new caller takes the slot closest
to full. So a flood of unique addresses can only make the limiter forget callers (who then get a full
bucket, never a smaller one); it cannot grow the table or slow each request down.

The table is two preallocated arrays for one worker, or a SQLite file beside the index
(``Settings.rate_limit_db``) that every worker of ``kbq serve --workers N`` opens, so a key's limit is one
limit across workers.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from array import array
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

from kb.config import Settings
from service.shared_db import connect_shared

log = logging.getLogger(__name__)
WAYS = 8
MAX_CALLERS = 65_536  # slots: ~2 MB of SQLite pages, whatever the traffic
_SCHEMA = "CREATE TABLE IF NOT EXISTS buckets (slot INTEGER PRIMARY KEY, caller INTEGER, tat REAL)"
# WAL: readers and the one writer of the moment do not block each other; no fsync: limits need not survive a
# power cut; mmap: a flood touches pages all over the (~2 MB) file, read without a system call each
_PRAGMAS = ("journal_mode=WAL", "synchronous=OFF", "cache_size=-16384", "mmap_size=67108864")
_FILL = (
    "WITH RECURSIVE s(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM s WHERE i + 1 < ?) "
    "INSERT INTO buckets SELECT i, 0, 0.0 FROM s"
)


def fingerprint(caller: str) -> int:
    """A non-zero 63-bit name for ``caller`` (0 marks a free slot)."""
    return (int.from_bytes(hashlib.blake2b(caller.encode(), digest_size=8).digest(), "big") >> 1) or 1


class RateLimiter:
    """``per_minute`` requests a minute per caller, with bursts up to the same number."""

    def __init__(self, per_minute: int, max_callers: int = MAX_CALLERS, path: Path | None = None) -> None:
        self.capacity = max(1, per_minute)
        self.interval = 60.0 / self.capacity
        self.sets = max(1, max_callers // WAYS)
        self.max_callers = self.sets * WAYS
        self.shared = path is not None
        self._table: _Table = _SharedTable(path, self.max_callers) if path else _MemoryTable(self.max_callers)
        self._warned = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """In memory for one worker; shared through ``settings.rate_limit_db`` for several."""
        path = settings.rate_limit_db if settings.workers > 1 else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        return cls(settings.rate_limit_per_minute, path=path)

    def take(self, caller: str, now: float | None = None) -> float:
        """Spend one request; 0 when allowed, else the seconds until one is. A failing shared file (disk
        full, locked for 10 s) lets the request through and says so in the log, rather than failing it."""
        if now is None:  # the workers share wall-clock time; one process can use the monotonic clock
            now = time.time() if self.shared else time.monotonic()
        fp = fingerprint(caller)
        first = (fp % self.sets) * WAYS
        window = self.capacity * self.interval
        try:
            with self._table.locked() as table:
                slot, tat = table.place(first, fp, now)
                # a clock stepped back must not push anyone further than one window away
                tat = max(min(tat, now + window), now) + self.interval
                if tat - now > window:
                    return tat - now - window
                table.write(slot, fp, tat)
                return 0.0
        except sqlite3.Error as exc:
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("rate limit not applied: its table failed (%s)", exc)
            return 0.0

    def size(self) -> int:
        """Callers held now: never more than ``max_callers``."""
        with self._table.locked() as table:
            return table.size()

    def close(self) -> None:
        self._table.close()


class _Table(Protocol):
    def locked(self) -> AbstractContextManager[_Table]: ...

    def place(self, first: int, caller: int, now: float) -> tuple[int, float]:
        """The caller's slot in the set from ``first`` and its arrival time: its own, else the slot closest
        to full (a free slot has arrival time 0, so it goes first), with a full bucket (``now``)."""
        ...

    def write(self, slot: int, caller: int, tat: float) -> None: ...
    def size(self) -> int: ...
    def close(self) -> None: ...


class _MemoryTable:
    """Two preallocated arrays: 16 bytes a slot, allocated at once, never grown."""

    def __init__(self, slots: int) -> None:
        self.callers = array("q", bytes(8 * slots))
        self.tats = array("d", bytes(8 * slots))
        self._lock = threading.Lock()

    @contextmanager
    def locked(self) -> Iterator[_MemoryTable]:
        with self._lock:
            yield self

    def place(self, first: int, caller: int, now: float) -> tuple[int, float]:
        callers = self.callers[first : first + WAYS]
        if caller in callers:
            slot = first + callers.index(caller)
            return slot, self.tats[slot]
        tats = self.tats[first : first + WAYS]
        return first + tats.index(min(tats)), now

    def write(self, slot: int, caller: int, tat: float) -> None:
        self.callers[slot], self.tats[slot] = caller, tat

    def size(self) -> int:
        return len(self.callers) - self.callers.count(0)

    def close(self) -> None:
        pass


class _SharedTable:
    """The same slots as rows of a SQLite file; ``BEGIN IMMEDIATE`` makes each request's read and write one
    step across processes."""

    def __init__(self, path: Path, slots: int) -> None:
        self._lock = threading.Lock()
        self._db = connect_shared(path, _PRAGMAS, lambda db: self._create(db, slots), isolation_level=None)

    def _create(self, db: sqlite3.Connection, slots: int) -> None:
        """Every slot exists from the start (caller 0: free), so requests only update rows."""
        db.execute(_SCHEMA)
        if db.execute("SELECT count(*) FROM buckets").fetchone()[0] != slots:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM buckets")
            db.execute(_FILL, (slots,))
            db.execute("COMMIT")

    @contextmanager
    def locked(self) -> Iterator[_SharedTable]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def place(self, first: int, caller: int, now: float) -> tuple[int, float]:
        rows = self._db.execute(
            "SELECT slot, caller, tat FROM buckets WHERE slot BETWEEN ? AND ?", (first, first + WAYS - 1)
        ).fetchall()
        mine = next(((slot, tat) for slot, who, tat in rows if who == caller), None)
        return mine or (min(rows, key=lambda row: row[2])[0], now)

    def write(self, slot: int, caller: int, tat: float) -> None:
        self._db.execute("UPDATE buckets SET caller = ?, tat = ? WHERE slot = ?", (caller, tat, slot))

    def size(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM buckets WHERE caller != 0").fetchone()[0])

    def close(self) -> None:
        self._db.close()
