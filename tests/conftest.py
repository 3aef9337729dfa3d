"""Shared pytest fixtures."""

from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """The tests run tiny models: intra-op threads only add overhead (and spin on a busy CPU)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder beside the repository (``../shared``); skip when it is missing.

    A fresh clone has no ``../shared``, so every test that needs real data skips there.
    """
    path = Path(__file__).resolve().parents[2] / "shared"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found (only present in the development checkout)")
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tiny random components in the exact diffusers folder layout (written once per session)."""
    from vidtune.models import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_components(tiny_model_dir):
    """The tiny model loaded through the real loading code (shared: tests must not modify it)."""
    from vidtune.models import load_components

    return load_components(tiny_model_dir)
