"""Writing results so that a failed run leaves nothing half-written and no input is ever overwritten.

A directory output is built in a hidden temporary directory beside the target and renamed into place
when complete; a file output is written to a temporary file beside it and renamed (`os.replace`).
A target that is, or contains, an input is refused; an existing directory is replaced only when an
earlier avfusion run wrote it (it holds `result.json`), otherwise it is refused as well.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

from avfusion.errors import ConfigError, OutputError

__all__ = ["MARKER", "OutputError", "output_dir", "output_file", "write_json", "check_not_input", "check_dir_target",
           "check_file_target"]

MARKER = "result.json"       # every directory output holds it; its presence allows replacing the directory


def check_not_input(target: str | os.PathLike, inputs: Sequence[str | os.PathLike]) -> None:
    """Refuse a target that is an input, or a directory that holds one."""
    t = Path(target).resolve()
    for p in inputs:
        p = Path(p).resolve()
        if p == t or t in p.parents:
            raise ConfigError(f"refusing to write {target}: it {'is' if p == t else 'holds'} the input {p}; "
                              "choose another -o/--output")


def _sibling(target: Path, tag: str) -> Path:
    return target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}")


def check_dir_target(target: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Path:
    """Raise ConfigError unless `output_dir(target, inputs)` may write there (check before long work)."""
    target = Path(target)
    check_not_input(target, inputs)
    if target.exists():
        if not target.is_dir():
            raise ConfigError(f"{target} exists and is not a directory; choose another -o/--output")
        if any(target.iterdir()) and not (target / MARKER).is_file():
            raise ConfigError(f"{target} is a directory that avfusion did not write (no {MARKER}); "
                              "choose another -o/--output")
    return target


def check_file_target(target: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (),
                      suffix: str | None = None) -> Path:
    """Raise ConfigError unless `output_file(target, inputs, suffix)` may write there."""
    target = Path(target)
    if suffix and target.suffix.lower() != suffix:
        raise ConfigError(f"{target}: the output must be a {suffix} file")
    check_not_input(target, inputs)
    if target.is_dir():
        raise ConfigError(f"{target} is a directory; give a {suffix or ''} file name")
    return target


@contextlib.contextmanager
def output_dir(target: str | os.PathLike, inputs: Sequence[str | os.PathLike] = ()) -> Iterator[Path]:
    """Yield an empty temporary directory; on success it becomes `target` (replacing an earlier output)."""
    target = check_dir_target(target, inputs)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(target, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            old = _sibling(target, "old")
            os.rename(target, old)
            try:
                os.rename(tmp, target)
            except OSError:
                os.rename(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def output_file(target: str | os.PathLike, inputs: Sequence[str | os.PathLike] = (),
                suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` atomically (the package's
    one atomic-write helper, `avfusion.checkpoints.io.atomic_path`)."""
    from avfusion.checkpoints.io import atomic_path

    with atomic_path(check_file_target(target, inputs, suffix)) as tmp:
        yield tmp


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    path = Path(path)
    path.write_text(json.dumps(obj, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
