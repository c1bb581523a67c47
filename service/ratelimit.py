"""The per-caller rate limit: a hard memory bound and O(1) work per request, shared by a server's workers.

GCRA (the token bucket as one number): each caller has a "theoretical arrival time", the moment its bucket
would be full again. A request is allowed when that moment, pushed one interval later, is at most a minute
away; a caller whose moment has passed has a full bucket, so forgetting it loses nothing.

The table has a fixed number of slots, in sets of ``WAYS``: a caller (a 63-bit fingerprint of its name, so
a long name costs no memory) lives in one slot of the set its fingerprint picks. Every request reads that
set's 8 slots and writes at most one, however many callers there are; a new caller takes the slot closest
to full. So a flood of unique addresses can only make the limiter forget callers (who then get a full
bucket, never a smaller one); it cannot grow the table or slow each request down.

The table is SQLite: in memory for one worker, or the file beside the index (``Settings.rate_limit_db``) that
every worker of ``kbq serve --workers N`` opens, so a key's limit is one limit across workers.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from pathlib import Path

from kb.config import Settings

log = logging.getLogger(__name__)
WAYS = 8
MAX_CALLERS = 65_536  # slots: ~2 MB of SQLite pages, whatever the traffic
_SCHEMA = "CREATE TABLE IF NOT EXISTS buckets (slot INTEGER PRIMARY KEY, caller INTEGER, tat REAL)"


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
        self._lock = threading.Lock()
        self._warned = 0.0
        self._db = sqlite3.connect(
            str(path) if path else ":memory:", check_same_thread=False, isolation_level=None, timeout=10
        )
        if path is not None:
            self._db.execute("PRAGMA journal_mode=WAL")
        for pragma in ("synchronous=OFF", "cache_size=-16384"):  # limits need not survive a power cut
            self._db.execute(f"PRAGMA {pragma}")
        self._db.execute(_SCHEMA)
        self._allocate()

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        """In memory for one worker; shared through ``settings.rate_limit_db`` for several."""
        path = settings.rate_limit_db if settings.workers > 1 else None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        return cls(settings.rate_limit_per_minute, path=path)

    def _allocate(self) -> None:
        """Create every slot now (caller 0: free), so a request only updates a row and the table never grows."""
        with self._lock, self._transaction() as db:
            if db.execute("SELECT count(*) FROM buckets").fetchone()[0] != self.max_callers:
                db.execute("DELETE FROM buckets")
                db.executemany("INSERT INTO buckets VALUES (?, 0, 0.0)", ((i,) for i in range(self.max_callers)))

    def take(self, caller: str, now: float | None = None) -> float:
        """Spend one request; 0 when allowed, else the seconds until one is. A failing shared file (disk
        full, locked for 10 s) lets the request through and says so in the log, rather than failing it."""
        if now is None:  # the workers share wall-clock time; one process can use the monotonic clock
            now = time.time() if self.shared else time.monotonic()
        fp = fingerprint(caller)
        first = (fp % self.sets) * WAYS
        window = self.capacity * self.interval
        try:
            with self._lock, self._transaction() as db:
                rows = db.execute(
                    "SELECT slot, caller, tat FROM buckets WHERE slot BETWEEN ? AND ?", (first, first + WAYS - 1)
                ).fetchall()
                slot, tat = _place(rows, fp, now)
                # a clock stepped back must not push anyone further than one window away
                tat = max(min(tat, now + window), now) + self.interval
                if tat - now > window:
                    return tat - now - window
                db.execute("UPDATE buckets SET caller = ?, tat = ? WHERE slot = ?", (fp, tat, slot))
                return 0.0
        except sqlite3.Error as exc:
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("rate limit not applied: its table failed (%s)", exc)
            return 0.0

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def size(self) -> int:
        """Callers held now: never more than ``max_callers``."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM buckets WHERE caller != 0").fetchone()[0])

    def close(self) -> None:
        self._db.close()


def _place(rows: list[tuple[int, int, float]], fp: int, now: float) -> tuple[int, float]:
    """The caller's slot and arrival time: its own, else the slot of its set closest to full (a free slot
    has arrival time 0, so it goes first), starting from a full bucket."""
    for slot, caller, tat in rows:
        if caller == fp:
            return slot, tat
    return min(rows, key=lambda row: row[2])[0], now


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on error): the set is read and written under one lock,
    across processes too."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")
