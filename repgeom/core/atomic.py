"""The one way this project replaces a file: whole, durably, and only a regular file.

Design notes:
    A new file is written under a temporary name in the target's folder (``.<name>.*.part``),
    flushed to disk, given its permission bits, then renamed over the target, so a reader
    in any process sees the old content, the new content or no file, never part of one,
    even after a crash. If the writer raises (an error, Ctrl-C, or SIGTERM/SIGHUP turned
    into an exception by the CLI), the temporary file is removed and the target untouched.

    Only a regular file, or nothing, is ever replaced. A FIFO, a device (``/dev/null``
    when run as root) or a folder in the target's place is refused with one line. A
    symbolic link is refused too, unless the caller asks to follow it
    (``follow_symlinks=True``): then its final target is written, and the link stays.
    Caches refuse links (one planted in a shared folder must not redirect a write);
    files a user names (``export --out``, a models folder) follow them. The target is
    checked again right before the rename; a non-file swapped in between those two
    instants is the one race left, and needs write access to the folder.

    A full disk (``ENOSPC``, ``EDQUOT``) is :class:`DiskFullError`, one line naming the
    path, what was written before the disk filled and the space free; nothing partial
    stays behind. Other refusals are :class:`UnwritableTarget`, which is both an
    :class:`OSError` (caches log it and go on) and a
    :class:`~repgeom.core.errors.RepgeomError` (the CLI prints it and exits 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import RepgeomError

__all__ = ["DiskFullError", "UnwritableTarget", "atomic_path", "open_atomically", "resolve_target", "write_atomically"]

_FULL = (errno.ENOSPC, errno.EDQUOT)


class UnwritableTarget(OSError, RepgeomError):
    """A target an atomic write refuses (not a regular file, no such folder, no permission)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "refused"


class DiskFullError(OSError):
    """The disk filled while writing; the message names the path and the space involved."""

    def __init__(self, message: str, path: str | os.PathLike[str]) -> None:
        super().__init__(message)
        self.errno = errno.ENOSPC
        self.filename = str(path)

    def __str__(self) -> str:
        return str(self.args[0])


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _check_replaceable(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnwritableTarget(f"cannot write {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise UnwritableTarget(f"refusing to replace {path}: it is {_kind(st.st_mode)}, not a regular file")


def resolve_target(path: str | os.PathLike[str], follow_symlinks: bool = False) -> Path:
    """The file an atomic write of ``path`` replaces, checked.

    Args:
        path: the file named by the caller.
        follow_symlinks: write a symbolic link's final target (``True``) or refuse the link.

    Returns:
        ``path``, or the file its links lead to.

    Raises:
        UnwritableTarget: ``path`` (or a link's target) is a folder, FIFO, device, socket
            or (without ``follow_symlinks``) a link; or its folder does not exist.
    """
    target = Path(path)
    if follow_symlinks and target.is_symlink():
        target = Path(os.path.realpath(target))
    _check_replaceable(target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise UnwritableTarget(f"cannot write {target}: folder {parent} does not exist")
    return target


def _full_disk(target: Path, tmp: Path) -> DiskFullError:
    try:
        written = tmp.stat().st_size
    except OSError:
        written = 0
    try:
        free = shutil.disk_usage(target.parent).free
    except OSError:
        free = 0
    return DiskFullError(
        f"no space left on the device for {target}: {written} bytes written before the disk filled, {free} bytes "
        f"free in {target.parent}; at least {max(written - free, 1)} more bytes are needed (nothing was written)",
        target,
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], mode: int = 0o600, follow_symlinks: bool = False) -> Iterator[Path]:
    """A temporary path to write; on a clean exit it replaces ``path`` at once, durably.

    For writers that open the file themselves (``h5py``). See the module notes.

    Args:
        path: the file to create or replace.
        mode: permission bits of the new file (default: owner read/write only).
        follow_symlinks: write through a symbolic link at ``path`` instead of refusing it.

    Yields:
        The temporary file's path (an empty file, in ``path``'s folder).

    Raises:
        UnwritableTarget: ``path`` is not a regular file or cannot be created there.
        DiskFullError: the disk filled (nothing is left behind).
        OSError: anything else the file system reports.
    """
    target = resolve_target(path, follow_symlinks)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    except OSError as exc:
        if exc.errno in _FULL:
            raise _full_disk(target, Path(os.devnull)) from None
        raise UnwritableTarget(f"cannot write in {target.parent}: {exc.strerror or exc}") from None
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fchmod(fd, mode)
            os.fsync(fd)
        finally:
            os.close(fd)
        _check_replaceable(target)
        os.replace(tmp, target)
    except OSError as exc:
        full = exc.errno in _FULL and not isinstance(exc, DiskFullError)
        error = _full_disk(target, tmp) if full else None
        tmp.unlink(missing_ok=True)
        if error is not None:
            raise error from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def open_atomically(path: str | os.PathLike[str], mode: int = 0o600, follow_symlinks: bool = False) -> Iterator[BinaryIO]:
    """A binary file to write; on a clean exit it replaces ``path`` at once, durably.

    Args:
        path: the file to create or replace.
        mode: permission bits of the new file (default: owner read/write only).
        follow_symlinks: write through a symbolic link at ``path`` instead of refusing it.

    Yields:
        The open temporary file.

    Raises:
        UnwritableTarget: ``path`` is not a regular file or cannot be created there.
        DiskFullError: the disk filled (nothing is left behind).
        OSError: anything else the file system reports.
    """
    with atomic_path(path, mode, follow_symlinks) as tmp, open(tmp, "wb") as fh:
        yield fh
        fh.flush()


def write_atomically(path: str | os.PathLike[str], data: bytes, mode: int = 0o600, follow_symlinks: bool = False) -> None:
    """Write ``data`` to ``path`` all at once (see :func:`atomic_path`).

    Args:
        path: the file to create or replace.
        data: its whole new content.
        mode: permission bits of the new file (default: owner read/write only).
        follow_symlinks: write through a symbolic link at ``path`` instead of refusing it.

    Raises:
        UnwritableTarget: ``path`` is not a regular file or cannot be created there.
        DiskFullError: the disk filled (nothing is left behind).
        OSError: anything else the file system reports.
    """
    with open_atomically(path, mode, follow_symlinks) as fh:
        fh.write(data)
