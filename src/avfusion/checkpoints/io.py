"""Atomic file writes, the package's one helper: a crash never leaves a half-written file behind."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch


#: Temporary files are named ".<name>.<random>.tmp" beside their target (`stale_temporaries` finds them).
TMP_SUFFIX = ".tmp"


@contextmanager
def atomic_path(path: str | os.PathLike, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; rename it onto `path` only if the block succeeds (else
    delete it). ``durable``: flush the file to disk before the rename, and the directory after it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if durable:
            _fsync(tmp)
        os.replace(tmp, path)
        if durable:
            _fsync(path.parent)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def stale_temporaries(directory: str | os.PathLike, name_glob: str = "*") -> list[Path]:
    """Temporary files left behind for targets matching ``name_glob`` by a killed process (this helper's
    ".<name>.<random>.tmp", and the ".<name>.tmp<pid>" of earlier versions)."""
    return sorted(Path(directory).glob(f".{name_glob}.*{TMP_SUFFIX}*"))


def _fsync(path: str | os.PathLike) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot sync a directory
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
