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


SHARED = Path(__file__).resolve().parents[2] / "shared"  # beside the repository: CI and the development checkout
REAL_MODELS = SHARED / "data" / "models"

# Fixture -> (is its data here, why a test that uses it is skipped when not). A fresh clone has no ../shared.
_NEEDS_DATA = {
    "shared_dir": (
        SHARED.is_dir(),
        f"shared data folder {SHARED} not found (only present in the development checkout)",
    ),
    "models_dir": (
        (REAL_MODELS / "sd-v1-4" / "model_index.json").is_file(),
        f"{REAL_MODELS}/sd-v1-4 not found: the real model configs are only in the development checkout",
    ),
}


def pytest_collection_modifyitems(config, items):
    """Mark the tests whose fixtures need absent shared data as skipped, with the reason, at collection."""
    for item in items:
        for fixture, (present, reason) in _NEEDS_DATA.items():
            if not present and fixture in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.skip(reason=reason))
                break


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared data folder beside the repository (``../shared``): real OpenPose data, real model configs."""
    return SHARED


@pytest.fixture(scope="session")
def models_dir(shared_dir: Path) -> Path:
    """The real models' configs (SD v1-4, T2I-Adapter openpose, SAM ViT-B) in ``../shared/data/models``."""
    return REAL_MODELS


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """Tiny random components in the exact diffusers folder layout (written once per session)."""
    from vidtune.testing import make_tiny

    return make_tiny(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def tiny_components(tiny_model_dir):
    """The tiny model loaded through the real loading code (shared: tests must not modify it)."""
    from vidtune.models import load_components

    return load_components(tiny_model_dir)


@pytest.fixture(scope="session")
def finished(tmp_path_factory, tiny_model_dir):
    """(model, poses, run folder) of a finished four-stage run (6 frames of 32x32, 2 steps) made under
    umask 022, once per session; tests that change it work on a copy (`run_helpers.copy_run`)."""
    import os

    from run_helpers import run_args, write_poses
    from vidtune.cli import main

    root = tmp_path_factory.mktemp("hardening")
    pose_dir = write_poses(root / "poses")
    run = root / "run"
    old = os.umask(0o022)
    try:
        assert main(run_args(tiny_model_dir, pose_dir, run)) == 0
    finally:
        os.umask(old)
    return tiny_model_dir, pose_dir, run
