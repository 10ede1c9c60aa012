"""Reading untrusted files: regular files only, bounded in size, never a FIFO or a device.

Design notes:
    A path is opened with ``O_NONBLOCK`` (so a FIFO cannot block the open) and
    ``O_NOFOLLOW`` is *not* used (a models folder may hold symlinks to shared
    checkpoints); the opened descriptor is then checked with ``fstat``, so a file
    swapped between a check and the open cannot get through. Anything but a regular file
    is refused with one line naming it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import RepgeomError

__all__ = ["MAX_FILE_BYTES", "read_regular"]

#: Largest file read this way (checkpoints included).
MAX_FILE_BYTES = 2 << 30


def read_regular(path: str | os.PathLike[str], max_bytes: int = MAX_FILE_BYTES, what: str = "file") -> bytes:
    """The bytes of ``path``, which must be a regular file of at most ``max_bytes``.

    Raises:
        RepgeomError: missing, unreadable, not a regular file (a FIFO, device or folder),
            or too large; the message names the path.
    """
    p = Path(path)
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise RepgeomError(f"{p}: no such {what}") from None
    except OSError as exc:
        raise RepgeomError(f"{p}: cannot open the {what} ({exc.strerror or exc})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = "a folder" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
            raise RepgeomError(f"{p}: refused, the {what} is {kind}")
        if st.st_size > max_bytes:
            raise RepgeomError(f"{p}: refused, the {what} is larger than {max_bytes} bytes")
        os.set_blocking(fd, True)
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        data = b"".join(chunks)
        if len(data) > max_bytes:
            raise RepgeomError(f"{p}: refused, the {what} is larger than {max_bytes} bytes")
        return data
    except OSError as exc:
        raise RepgeomError(f"{p}: cannot read the {what} ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
