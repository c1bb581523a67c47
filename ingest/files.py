"""Reading the corpus folder, and nothing outside it.

Only regular files inside the corpus are read. A symbolic link is followed only when it stays inside the
corpus and names a regular file; a link that leaves it, a link to a folder (a loop or a second copy of the
corpus), a FIFO or a device is reported and skipped. Every file is opened one path step at a time from the
corpus folder with ``O_NOFOLLOW``, so swapping a folder for a link between the check and the read cannot
reach outside either.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

MAX_BYTES = 20 * 1024 * 1024
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # NONBLOCK: a FIFO cannot hang us


class Unreadable(Exception):
    """A corpus entry that is not read; the message is the reason shown in the ingest report."""


def walk(root: Path) -> Iterator[tuple[Path, str | None]]:
    """``(path, None)`` for every candidate file under ``root`` in sorted order, and ``(path, reason)`` for
    entries skipped on the way (links to folders). Hidden names (a leading dot) are ignored."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        here = Path(folder)
        visible = sorted(d for d in dirs if not d.startswith("."))
        dirs[:] = [d for d in visible if not (here / d).is_symlink()]
        entries = [(d, True) for d in visible if (here / d).is_symlink()]
        entries += [(f, False) for f in files if not f.startswith(".")]
        for name, linked_dir in sorted(entries):
            path = here / name
            yield path, _linked_folder(path, root) if linked_dir else None


def _linked_folder(path: Path, root: Path) -> str:
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return "broken symbolic link, skipped"
    if not target.is_relative_to(root.resolve()):
        return "symbolic link to a folder outside the corpus folder, skipped"
    return "symbolic link to a folder, not followed (link the files instead)"


def read_inside(path: Path, root: Path, limit: int = MAX_BYTES) -> bytes:
    """The bytes of the regular file at ``path``, which must be inside ``root`` once every link is
    resolved; raises Unreadable with the reason otherwise, or when it is over ``limit`` bytes."""
    real_root = root.resolve()
    try:
        target = path.resolve(strict=True)
    except FileNotFoundError:
        raise Unreadable("broken symbolic link, skipped" if path.is_symlink() else "file is gone") from None
    except (OSError, RuntimeError):
        raise Unreadable("symbolic link loop, skipped") from None
    if not target.is_relative_to(real_root):
        raise Unreadable("symbolic link to a file outside the corpus folder, skipped")
    if target == real_root:
        raise Unreadable("not a regular file, skipped")
    try:
        fd = _open_beneath(real_root, target.relative_to(real_root).parts)
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file, skipped")
        data = fh.read(limit + 1)
    if len(data) > limit:
        raise Unreadable(f"file is over the {limit // 1_000_000} MB limit")
    return data


def _open_beneath(root: Path, parts: tuple[str, ...]) -> int:
    """Open ``root/parts…`` one step at a time, refusing a symbolic link at every step."""
    fd = os.open(root, _DIR_FLAGS)
    try:
        for part in parts[:-1]:
            step = os.open(part, _DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = step
        return os.open(parts[-1], _FILE_FLAGS, dir_fd=fd)
    finally:
        os.close(fd)
