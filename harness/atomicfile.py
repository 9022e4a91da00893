"""Atomic file writes: a reader sees the old file or the whole new one, never half of it.

Files written here get the permissions the umask allows (``0o666 & ~umask``), as ``open`` would
give them: ``tempfile.mkstemp`` alone makes them private (0600), which breaks a cache shared by
a group (another member cannot read them). Reads of files that
a cache may hold use :func:`read_regular`: no symbolic links followed, regular files only, and
a size bound checked before anything is read.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import Any


class UnsafeFileError(OSError):
    """A path that :func:`read_regular` refuses: a symbolic link, not a regular file, or too large."""


def current_umask() -> int:
    """The process's umask, read without changing it where the system says (Linux); else set and restored."""
    try:
        with open("/proc/self/status", "rb") as handle:
            for line in handle:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # not thread-safe for an instant: only where /proc has no answer
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode ``open`` gives a new file: ``0o666`` less the umask (0o664 under umask 002)."""
    return 0o666 & ~current_umask()


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place.

    The file gets ``0o666 & ~umask`` (not ``mkstemp``'s 0600). Renaming replaces whatever had
    the name, a symbolic link included (the link, never its target).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:40]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            try:
                os.fchmod(handle.fileno(), file_mode())
            except OSError:  # a filesystem without modes (vfat, some network mounts): its defaults apply
                pass
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _open_regular(path: Path | str, flags: int, mode: int = 0o666) -> int:
    """``os.open`` without following a final symbolic link (ELOOP); the fd of a regular file only."""
    fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                 | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # O_NONBLOCK: opening a FIFO did not wait for a writer
            raise UnsafeFileError(errno.EINVAL, "not a regular file", str(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_regular(path: Path | str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (checked before reading).

    Raises :class:`UnsafeFileError` for a symbolic link, a device, FIFO or folder, or a larger
    file, and the usual ``OSError`` (``FileNotFoundError``, ``PermissionError``) otherwise.
    """
    return read_regular_from(path, max_bytes)[0]


def read_regular_from(path: Path | str, max_bytes: int, start: int = 0) -> tuple[bytes, os.stat_result]:
    """:func:`read_regular` from byte ``start`` on (for files that only grow, read a part at a time),
    and the file's ``os.stat_result`` as opened (``st_ino``/``st_dev``/``st_size``: whether it is
    still the file read before). The bound ``max_bytes`` applies to the whole file."""
    try:
        fd = _open_regular(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno == errno.ELOOP and not isinstance(exc, UnsafeFileError):
            raise UnsafeFileError(errno.ELOOP, "a symbolic link", str(path)) from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        size = info.st_size
        if size > max_bytes:
            raise UnsafeFileError(errno.EFBIG, f"{size} bytes, more than the {max_bytes} allowed", str(path))
        handle.seek(min(start, size))
        parts, total = [], min(start, size)
        while True:  # in chunks: a file still growing (an appended manifest) is read to its end, up to the bound
            chunk = handle.read(max(size - total, 0) or 1 << 20)
            if not chunk:
                break
            parts.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise UnsafeFileError(errno.EFBIG, f"more than the {max_bytes} bytes allowed", str(path))
    return b"".join(parts), info


def is_regular(path: Path | str) -> bool:
    """True if ``path`` itself (not a link's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def is_real_dir(path: Path | str) -> bool:
    """True if ``path`` itself (not a link's target) is a folder."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def append_line(path: Path, line: str) -> None:
    """Append one line and fsync; first terminate a partial last line a killed writer may have left.

    Not atomic by itself: callers serialise appends with a lock, and readers skip a partial line.
    Never appends through a symbolic link or to anything but a regular file (``OSError``).
    """
    fd = _open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    with os.fdopen(fd, "a+b") as handle:
        handle.seek(0, os.SEEK_END)
        if handle.tell():
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        handle.write(line.encode("utf-8") + b"\n")
        handle.flush()
        os.fsync(handle.fileno())


def file_lock(path: Path | str, timeout: float) -> Any:
    """A ``filelock.FileLock`` whose lock file gets the umask's permissions on every filelock version
    (before 3.x releases that respect the umask, filelock forced 0o644, which locks a group out)."""
    import inspect

    import filelock

    try:
        default = inspect.signature(filelock.FileLock.__init__).parameters.get("mode")
    except (TypeError, ValueError):
        default = None
    if default is not None and default.default == 0o644:
        return filelock.FileLock(str(path), timeout=timeout, mode=file_mode())
    return filelock.FileLock(str(path), timeout=timeout)
