"""Publishing a finished folder under its final name, so a reader finds the old one or the new one, whole.

Shared by the index (kb/indexer.py: a symlink to the new version replaces the old link) and the USE model
cache (kb/use_cache.py: a verified cache folder replaces a stale one).
"""

from __future__ import annotations

import os
from collections.abc import Callable
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
