"""Files that appear whole or not at all: checkpoints, cache entries, reports.

Each is written to a temporary file in its own folder, flushed to disk and renamed into place, so
a reader (another worker, a resumed run, a crash's aftermath) never sees half a file.
"""
import contextlib
import os
import secrets
from pathlib import Path

TMP_SUFFIX = ".tmp"   # ".<name>.<random>.tmp": a killed writer's leftover, never a finished file


@contextlib.contextmanager
def atomic_file(path):
    """A binary file object that becomes ``path`` only once the ``with`` block ends without error.

    The temp file is made like ``open(path, "wb")`` makes a file (mode 0o666 less the umask),
    fsynced before the rename, and removed on any error; the folder is fsynced after the rename
    where the file system allows, so the new name survives a power cut too.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)


def write_atomic(path, data):
    """``data`` (bytes, or str written as UTF-8) into ``path``, whole or not at all."""
    with atomic_file(path) as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def save_atomic(obj, path):
    """``torch.save(obj)`` into ``path``, whole or not at all."""
    import torch

    with atomic_file(path) as f:
        torch.save(obj, f)


def _fsync_folder(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:   # a folder that cannot be opened (some platforms): the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:   # file systems that cannot fsync a folder
        pass
    finally:
        os.close(fd)
