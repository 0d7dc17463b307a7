"""Training-state checkpoints: atomic writes, sha256 sidecars, keep-last-K, fallback on damage.

``DIR/step_00001234.pt`` holds the state after 1234 optimizer steps; ``step_00001234.pt.sha256``
holds its checksum in ``sha256sum`` format (``sha256sum -c`` checks it). Both are written to a
temporary file first and renamed into place, so a killed writer never leaves a half file under the
final name. Files are read with ``torch.load(weights_only=True)``: states hold only tensors and
plain containers (RNG states included, see :func:`capture_rng`).
"""
from __future__ import annotations

import hashlib
import logging
import random
import re
from pathlib import Path

import numpy as np
import torch

from avfusion.checkpoints.io import atomic_path, stale_temporaries
from avfusion.errors import CheckpointError

log = logging.getLogger(__name__)

_NAME = re.compile(r"^step_(\d{8,})\.pt$")
_CHUNK = 1 << 20


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"step_{step:08d}.pt"


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


class _HashingFile:
    """A write-only file object that also feeds a sha256."""

    def __init__(self, handle):
        self.handle, self.digest = handle, hashlib.sha256()

    def write(self, data) -> int:
        self.digest.update(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()




def save_checkpoint(state: dict, directory: str | Path, step: int, keep_last: int) -> Path:
    """Write ``state`` as the checkpoint of ``step``, atomically, then delete all but the last ``keep_last``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = checkpoint_path(directory, step)
    with atomic_path(path, durable=True) as tmp, open(tmp, "wb") as handle:
        writer = _HashingFile(handle)
        torch.save(state, writer)
    with atomic_path(_sidecar(path), durable=True) as tmp:
        tmp.write_text(f"{writer.digest.hexdigest()}  {path.name}\n")
    prune(directory, keep_last)
    return path


def prune(directory: str | Path, keep_last: int) -> None:
    """Delete all checkpoints but the ``keep_last`` newest, and stale temporary files."""
    directory = Path(directory)
    for _, path in list_checkpoints(directory)[:-keep_last]:
        path.unlink(missing_ok=True)
        _sidecar(path).unlink(missing_ok=True)
    for stale in stale_temporaries(directory, "step_*"):  # left by a killed process
        stale.unlink(missing_ok=True)


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def verify(path: str | Path) -> None:
    """Raise CheckpointError unless ``path`` matches its sha256 sidecar."""
    path = Path(path)
    side = _sidecar(path)
    if not side.is_file():
        raise CheckpointError(f"{path}: checksum file {side.name} is missing (the write was interrupted?)")
    fields = side.read_text().split()
    expected = fields[0] if fields else ""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise CheckpointError(f"{path}: sha256 does not match {side.name}; the file is damaged")


def load_checkpoint(path: str | Path, check: bool = True) -> dict:
    """Read one checkpoint (checksum first when ``check``) with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    if check:
        verify(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise CheckpointError(f"{path}: cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a training checkpoint (top level is {type(state).__name__})")
    return state


def load_latest(directory: str | Path) -> tuple[Path, dict] | None:
    """The newest intact checkpoint; damaged ones are skipped with a warning. None if there are none."""
    found = list_checkpoints(directory)
    damaged = []
    for _, path in reversed(found):
        try:
            return path, load_checkpoint(path)
        except CheckpointError as exc:
            damaged.append(str(path))
            log.warning("%s; falling back to the previous checkpoint", exc)
    if damaged:
        raise CheckpointError(f"every checkpoint in {directory} is damaged: {', '.join(damaged)}; "
                              "delete them to start over, or resume from a copy")
    return None


# ----------------------------------------------------------------------------- RNG states
def capture_rng() -> dict:
    """Python, NumPy, torch CPU and CUDA generator states as tensors and plain values."""
    version, internal, gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state = {
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
        "numpy": {"key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
                  "pos": int(np_state["state"]["pos"]), "has_gauss": int(np_state["has_gauss"]),
                  "gauss": float(np_state["gauss"])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: dict) -> None:
    """Inverse of :func:`capture_rng`."""
    py = state["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937",
                         "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
                         "has_gauss": npy["has_gauss"], "gauss": npy["gauss"]})
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
