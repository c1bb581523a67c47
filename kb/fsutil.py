"""Publishing a finished folder under its final name, so a reader finds the old one or the new one, whole.

Shared by the index (kb/indexer.py: a symlink to the new version replaces the old link) and the USE model
cache (kb/use_cache.py: a verified cache folder replaces a stale one). Also the writers' lock, which says
who holds it and gives up after a while.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def install(tmp: Path, final: Path, set_aside: Path, keep: Callable[[Path], bool] | None = None) -> bool:
    """Give the finished ``tmp`` (a folder, or a symlink to one) the name ``final``; True if it got it.

    rename(2) replaces a missing name, a file, a symlink or an empty folder in one step. A folder with
    content in the way is first renamed to ``set_aside`` (so for a moment ``final`` is missing), unless
    ``keep(final)`` says to leave it, e.g. because a concurrent writer has just installed a good one. If
    another writer takes ``final`` between those two renames, theirs stays and ``tmp`` is left in place.
    """
    try:
        os.replace(tmp, final)
    except OSError:
        if keep is not None and keep(final):
            return False
        os.rename(final, set_aside)
        try:
            os.replace(tmp, final)
        except OSError:
            return False
    sync_dir(final.parent)
    return True


def install_link(final: Path, target: Path, set_aside: Path) -> None:
    """Make ``final`` a relative symlink to ``target``, replacing what was there (see ``install``)."""
    link = final.parent / f".{final.name}.link-{os.urandom(3).hex()}"  # not secrets: that loads OpenSSL
    link.symlink_to(os.path.relpath(target, final.parent))
    if not install(link, final, set_aside):
        link.unlink()


def sync_file(f: IO[Any]) -> None:
    f.flush()
    os.fsync(f.fileno())


def sync_dir(d: Path) -> None:
    """Make a rename or a new file in ``d`` durable."""
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LockTimeout(Exception):
    """Another process held a lock for longer than we were willing to wait; the message names it."""


def _describe(holder: dict[str, Any], now: float) -> str:
    started = holder.get("started")
    since = f" for {_duration(now - started)}" if isinstance(started, int | float) else ""
    command = f" ({holder['command']})" if holder.get("command") else ""
    return f"process {holder.get('pid', '?')} on {holder.get('host', '?')}{command}{since}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _holder(fh: IO[str]) -> dict[str, Any]:
    fh.seek(0)
    try:
        holder = json.loads(fh.read(4096) or "{}")
    except ValueError:  # an older kbq wrote nothing; a holder may be mid-write
        return {}
    return holder if isinstance(holder, dict) else {}


@contextmanager
def exclusive_lock(
    path: Path,
    timeout: float,
    on_wait: Callable[[str], None] | None = None,
    what: str = "the lock",
    poll: float = 0.2,
) -> Iterator[None]:
    """Hold an exclusive flock(2) on ``path`` (created if missing) while the block runs.

    The holder writes its pid, host, command and start time into the file, so a waiter can say who it waits
    for: ``on_wait`` gets that description once, when waiting starts. After ``timeout`` seconds (0: do not
    wait) it raises LockTimeout naming the holder. The lock goes with the process, so a crashed holder
    never blocks anyone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # no O_TRUNC: that would erase what the holder wrote
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "r+", encoding="utf-8") as fh:
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _describe(_holder(fh), time.time())
                if time.monotonic() >= deadline:
                    raise LockTimeout(
                        f"gave up after {_duration(timeout)} waiting for {what} ({path}), held by {holder}; "
                        "if that process is hung, stop it and try again"
                    ) from None
                if on_wait is not None and not told:
                    on_wait(f"waiting for {what}, held by {holder}")
                    told = True
                time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
        try:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(_me()))
            fh.flush()
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _me() -> dict[str, Any]:
    command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else ""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command[:200],
        "started": time.time(),
    }
