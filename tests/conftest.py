"""Shared test fixtures: the official reference vectors in ../shared/reference."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REFERENCE_DIR = Path(os.environ.get("AVFUSION_REFERENCE", Path(__file__).resolve().parents[1] / ".." / "shared" / "reference"))


def _load_reference(name: str):
    path = REFERENCE_DIR / name
    if not path.exists():
        pytest.skip(f"reference vectors not found at {path} (they live in ../shared/reference, "
                    "present in CI; set AVFUSION_REFERENCE to point elsewhere)")
    return torch.load(path, weights_only=True)


@pytest.fixture
def one_thread():
    """torch on one thread for the test (same kernels as subprocess runs; fair on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def official_tiny():
    return _load_reference("official_tiny.pt")


@pytest.fixture(scope="session")
def official_tiny_segmentation():
    return _load_reference("official_tiny_segmentation.pt")


@pytest.fixture(scope="session")
def official_audio():
    return _load_reference("official_audio.pt")


def assert_close_rel(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5, what: str = "") -> None:
    """max|ours - ref| / max|ref| <= tol (the reference README's criterion)."""
    assert ours.shape == ref.shape, f"{what}: shape {tuple(ours.shape)} != {tuple(ref.shape)}"
    err = (ours.double() - ref.double()).abs().max().item()
    scale = ref.double().abs().max().item() or 1.0
    assert err / scale <= tol, f"{what}: max rel error {err / scale:.3e} > {tol:.0e}"
