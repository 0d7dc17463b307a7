"""Shared test fixtures: the official reference vectors.

The compact set ships in ``tests/reference`` and runs in every clone; the larger set runs too where it
is found (``$AVFUSION_REFERENCE``, default ``../shared/reference`` beside the checkout) and skips, saying
so, where it is not. Both are normalised to one shape: float16 state dicts upcast to float32 (exact),
and the case of fusion in a subset of the blocks named ``<arch>/subset`` whatever its blocks.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

SHIPPED_DIR = Path(__file__).resolve().parent / "reference"
REFERENCE_DIR = Path(os.environ.get("AVFUSION_REFERENCE", Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"))
#: reference set -> (directory, model file, segmentation file)
REFERENCE_SETS = {"compact": (SHIPPED_DIR, "official_compact.pt", "official_compact_segmentation.pt"),
                  "full": (REFERENCE_DIR, "official_tiny.pt", "official_tiny_segmentation.pt")}


def _upcast(value):
    if isinstance(value, torch.Tensor):
        return value.float() if value.dtype == torch.float16 else value
    if isinstance(value, dict):
        return {k: _upcast(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_upcast(v) for v in value)
    return value


def _load_reference(directory: Path, name: str):
    path = directory / name
    if not path.exists():
        pytest.skip(f"reference vectors not found at {path} (the larger official set; set AVFUSION_REFERENCE "
                    "to its directory; the compact set in tests/reference runs regardless)")
    data = _upcast(torch.load(path, weights_only=True))
    if "cases" in data:
        subset = json.loads(data["config"])["layers_subset"]
        data["cases"] = {(k[: -len(subset)] + "subset" if k.endswith("/" + subset) else k): v
                         for k, v in data["cases"].items()}
    return data


@pytest.fixture
def one_thread():
    """torch on one thread for the test (same kernels as subprocess runs; fair on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session", params=sorted(REFERENCE_SETS))
def official_tiny(request):
    """The official pretraining, classification and separation vectors (compact, and full where present)."""
    directory, name, _ = REFERENCE_SETS[request.param]
    return _load_reference(directory, name)


@pytest.fixture(scope="session", params=sorted(REFERENCE_SETS))
def official_tiny_segmentation(request):
    directory, _, name = REFERENCE_SETS[request.param]
    return _load_reference(directory, name)


@pytest.fixture(scope="session")
def official_audio():
    return _load_reference(SHIPPED_DIR, "official_audio.pt")


def assert_close_rel(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5, what: str = "") -> None:
    """max|ours - ref| / max|ref| <= tol (the reference README's criterion)."""
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    err = (ours.double() - ref.double()).abs().max().item()
    scale = ref.double().abs().max().item() or 1.0
    assert err / scale <= tol, f"{what}: max rel error {err / scale:.3e} > {tol:.0e}"
