"""The CLI's outputs stay what was recorded: `vidtune demo --frames 8 --steps 6` (one torch thread, as
every test runs) reproduces the latents of stages 1, 2 and 4 and stage 3's LoRA weights of the
recorded run, within `GOLDEN_TOLERANCE`.

The committed file is compared with a tolerance because CPUs round differently (AVX-512 and AVX2
kernels differ at the 1e-4 level after a few stages); the tolerance is relative to each tensor's norm,
so it holds across machines and still catches any change meant to alter results (another model, seed,
schedule or stage: relative errors of 1e-1 and more). A refactor that must change nothing checks bit
identity on one machine instead: `python tests/test_golden.py record /tmp/before.safetensors` before,
`python tests/test_golden.py compare /tmp/before.safetensors` after.

Regenerate `tests/data/golden_demo_f8_s6.safetensors` only for a change that is meant to alter results:
`python tests/test_golden.py record` (and say why in the commit)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from golden_data import GOLDEN_TOLERANCE, differing

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
def test_demo_latents_match_the_recorded_run(tmp_path):
    from safetensors.torch import load_file

    from vidtune.cli import main

    assert main([*ARGS, "--out", str(tmp_path / "run")]) == 0
    got, want = _collect(tmp_path / "run"), load_file(str(GOLDEN))
    assert sorted(got) == sorted(want)
    differ = differing(got, want, GOLDEN_TOLERANCE)
    assert not differ, f"{len(differ)} tensors differ from the recorded run, e.g. {differ[:3]}"


def test_the_tolerance_catches_a_real_change_and_passes_rounding():
    """What the tolerance lets through: float32 rounding noise, not a perturbation a change of result makes."""
    want = {"x": torch.randn(8, 4, 16, 16, generator=torch.Generator().manual_seed(0))}
    rounding = {"x": want["x"] * (1 + 1e-4 * torch.randn(want["x"].shape))}
    changed = {"x": want["x"] + 0.05 * torch.randn(want["x"].shape)}
    assert differing(rounding, want, GOLDEN_TOLERANCE) == []
    assert differing(changed, want, GOLDEN_TOLERANCE) and differing(rounding, want, 0)


def _run() -> dict[str, torch.Tensor]:
    import tempfile

    from vidtune.cli import main

    torch.set_num_threads(1)  # one thread, like the test
    with tempfile.TemporaryDirectory() as tmp:
        assert main([*ARGS, "--out", f"{tmp}/run"]) == 0
        return {k: v.contiguous() for k, v in _collect(Path(tmp) / "run").items()}


if __name__ == "__main__":  # record [PATH] (default: the committed file) | compare PATH (bit for bit)
    from safetensors.torch import load_file, save_file

    action, path = (sys.argv[1:] + ["record"])[0], Path((sys.argv[2:] + [str(GOLDEN)])[0])
    if action == "record":
        save_file(_run(), str(path))
        print(f"recorded {path}", file=sys.stderr)
    elif action == "compare":
        differ = differing(_run(), load_file(str(path)), 0)
        print(f"{len(differ)} tensors differ from {path}: {differ[:5]}" if differ else f"bit-identical to {path}")
        sys.exit(1 if differ else 0)
    else:
        sys.exit("usage: python tests/test_golden.py [record [PATH] | compare PATH]")
