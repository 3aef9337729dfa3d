"""The CLI's outputs are bit-identical across refactors: `vidtune demo --frames 8 --steps 6` (one torch
thread, as every test runs) reproduces the latents of stages 1, 2 and 4 and stage 3's LoRA weights that
were recorded before the API/architecture change (issue 11), bit for bit.

Regenerate `tests/data/golden_demo_f8_s6.safetensors` only for a change that is meant to alter results:
`python tests/test_golden.py` (and say why in the commit)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).parent / "data" / "golden_demo_f8_s6.safetensors"
ARGS = ["demo", "--frames", "8", "--steps", "6"]


def _collect(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    got = {}
    for k in (1, 2, 4):
        got.update({f"stage{k}.{n}": t for n, t in load_file(str(out / f"stage{k}" / "latents.safetensors")).items()})
    got.update({f"stage3.{n}": t for n, t in load_file(str(out / "stage3" / "unet_lora.safetensors")).items()})
    return got


@pytest.mark.slow
def test_demo_latents_are_bit_identical_to_the_recorded_run(tmp_path):
    from safetensors.torch import load_file

    from vidtune.cli import main

    assert main([*ARGS, "--out", str(tmp_path / "run")]) == 0
    got, want = _collect(tmp_path / "run"), load_file(str(GOLDEN))
    assert sorted(got) == sorted(want)
    differ = [k for k in want if not torch.equal(got[k], want[k])]
    assert not differ, f"{len(differ)} tensors differ from the recorded run, e.g. {differ[:3]}"


if __name__ == "__main__":  # re-record (one thread, like the test)
    import tempfile

    from safetensors.torch import save_file

    from vidtune.cli import main

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        assert main([*ARGS, "--out", f"{tmp}/run"]) == 0
        save_file({k: v.contiguous() for k, v in _collect(Path(tmp) / "run").items()}, str(GOLDEN))
    print(f"recorded {GOLDEN}", file=sys.stderr)
