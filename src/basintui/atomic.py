"""Files written whole or not at all: the data goes to an unnamed file (Linux O_TMPFILE) that gets its
name only when complete, or, where that is not available, to a named temporary that the next write to
the same path sweeps up. Torch-free: the engine's reports, the app's screenshots use it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TMP_TAG = ".basintui-"  # temporary names: .{name}.basintui-{pid}-{random}.tmp beside the target


def _sweep(directory: Path, name: str) -> None:
    """Remove temporary files a killed writer left for `name` (their writer's pid is gone)."""
    prefix = f".{name}{TMP_TAG}"
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        try:
            pid = int(entry.name[len(prefix):].split("-", 1)[0])
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):  # ours may be another thread's write in flight
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomic(path: str | os.PathLike, write) -> Path:
    """Write through `write(fh)` and put the result at `path` in one step.

    On Linux the data goes to an unnamed file (O_TMPFILE) that is given a name only once complete,
    so a SIGKILL while writing leaves nothing behind; elsewhere (or where the file system has no
    O_TMPFILE) to a named temporary that the next write to the same path sweeps up. The file is
    created with mode 0666 less the umask, like any other tool's output."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    directory = path.parent
    _sweep(directory, path.name)
    tmp = directory / f".{path.name}{TMP_TAG}{os.getpid()}-{secrets.token_hex(4)}.tmp"
    fd, named = -1, False
    if hasattr(os, "O_TMPFILE"):
        try:
            fd = os.open(directory, os.O_TMPFILE | os.O_RDWR, 0o666)
        except OSError:
            fd = -1
    if fd < 0:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        named = True
    try:
        with os.fdopen(fd, "wb", closefd=False) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if not named:
            # the name appears only now, and is replaced by the target at once (a kill in between
            # leaves a temporary that the next write sweeps up)
            try:
                _link_tmpfile(fd, tmp)
                named = True
            except OSError:  # e.g. EXDEV on overlayfs: copy the finished data to a named temporary
                named = True
                _copy_to(fd, tmp)
        os.replace(tmp, path)
    except BaseException:
        if named:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
        raise
    finally:
        os.close(fd)
    return path


def _link_tmpfile(fd: int, tmp: Path) -> None:
    """linkat(AT_FDCWD, "/proc/self/fd/N", …, AT_SYMLINK_FOLLOW): os.link calls plain link(2), which
    does not follow the /proc link, unless a dir_fd is given."""
    dfd = os.open(tmp.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.link(f"/proc/self/fd/{fd}", tmp.name, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=True)
    finally:
        os.close(dfd)


def _copy_to(fd: int, tmp: Path) -> None:
    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 20):
            view = memoryview(chunk)
            while view:
                view = view[os.write(out, view):]
        os.fsync(out)
    finally:
        os.close(out)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """`text` as UTF-8 at `path` (see write_atomic); OSError when the folder cannot be written."""
    data = text.encode("utf-8")
    return write_atomic(path, lambda fh: fh.write(data))
