"""Opening a SQLite file that several processes open at once: the workers of ``kbq serve --workers N`` share
the rate-limit table (service/ratelimit.py) and the answer log (service/feedback.py).

Switching a file to WAL and creating or filling its tables need a write lock. Two connections that both
hold a read lock and both ask for it would deadlock, so SQLite answers "database is locked" at once instead
of waiting out the busy timeout: two workers starting together could fail. The opening steps therefore run
one process at a time, under a lock on a file beside the database; after them, each transaction waits on
the busy timeout as usual.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

from kb.fsutil import exclusive_lock

BUSY_TIMEOUT = 10.0  # seconds a transaction waits for another process's
OPEN_TIMEOUT = 60.0  # seconds a worker waits for another to finish opening (filling a table takes < 1 s)


def connect_shared(
    path: Path,
    pragmas: Iterable[str],
    setup: Callable[[sqlite3.Connection], None],
    isolation_level: Literal["DEFERRED", "IMMEDIATE", "EXCLUSIVE"] | None = "DEFERRED",
) -> sqlite3.Connection:
    """A connection to ``path``, usable from any thread (callers hold their own lock), after ``pragmas``
    and ``setup`` (creating tables, migrations) have run with no other process opening the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f"{path.name}.open-lock")
    with exclusive_lock(lock, OPEN_TIMEOUT, what=f"another worker opening {path.name}"):
        db = sqlite3.connect(
            str(path), timeout=BUSY_TIMEOUT, check_same_thread=False, isolation_level=isolation_level
        )
        try:
            for pragma in pragmas:
                db.execute(f"PRAGMA {pragma}")
            setup(db)
        except BaseException:
            db.close()
            raise
    return db
