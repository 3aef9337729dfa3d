"""One run over two gloo processes (torchrun) equals the one-process run; errors stop every rank.

Tiny model, 17 frames at 64x64, stage-4 clips of 8 with stride 4, DDIM with eta = 0.5 (its step noise is
drawn for the whole video, so a split that stepped each rank's frames alone would change it), a tuning
batch of 3 samples (split 2 + 1 over the ranks). The runs use one thread per process.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from vidtune import distributed as D
from vidtune.cli import main

FRAMES = 17
TORCHRUN = Path(sys.executable).with_name("torchrun")
VIDTUNE = Path(sys.executable).with_name("vidtune")


def config_text(model: Path, poses: Path, tuning_steps: int = 4) -> str:
    return textwrap.dedent(
        f"""
        [model]
        path = "{model}"
        adapter = ""
        device = "cpu"
        [inputs]
        poses = "{poses}"
        prompt = "a person dancing"
        height = 64
        width = 64
        [sampling]
        steps = 4
        guidance = 3.0
        eta = 0.5
        [tuning]
        trainable = "lora"
        steps = {tuning_steps}
        batch_size = 3
        checkpoint_every = 1
        keep_checkpoints = true
        lr = 1e-3
        [codenoise]
        clip_length = 8
        stride = 4
        """
    )


def env_one_thread() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", VIDTUNE_DIST_TIMEOUT="120")
    env.pop("WORLD_SIZE", None)
    return env


def torchrun(args: list[str], cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    cmd = [str(TORCHRUN), "--nproc-per-node", str(nproc), "--master-port", str(free_port()), "--no-python"]
    out = subprocess.run(
        cmd + [str(VIDTUNE), *args], cwd=cwd, env=env_one_thread(), capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """The tiny model, 17 frames of poses, the config; the one-process run (in this process)."""
    from test_pipeline import write_openpose_folder
    from vidtune.testing import make_tiny

    root = tmp_path_factory.mktemp("dist")
    model = make_tiny(root / "model", seed=0, sample_size=64)
    poses = write_openpose_folder(root / "poses", FRAMES)
    (root / "run.toml").write_text(config_text(model, poses))
    (root / "half.toml").write_text(config_text(model, poses, tuning_steps=2))
    assert main(["run", str(root / "run.toml"), "--out", str(root / "one"), "--quiet"]) == 0
    return {"root": root, "one": root / "one"}


@pytest.fixture(scope="module")
def two(setup) -> Path:
    """The same run over two processes."""
    out = setup["root"] / "two"
    torchrun(["run", "run.toml", "--out", str(out), "--quiet"], setup["root"])
    return out


def latents(run: Path, k: int) -> dict[str, torch.Tensor]:
    return load_file(str(run / f"stage{k}" / "latents.safetensors"))


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n].double() - b[n].double()).abs().max()) for n in a)


def rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[n].double() - b[n].double()).norm() / a[n].double().norm().clamp_min(1e-30)) for n in a)


def losses(run: Path) -> list[float]:
    return [float(r.split(",")[1]) for r in (run / "stage3" / "loss.csv").read_text().split()[1:]]


def lora(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "stage3" / "unet_lora.safetensors"))


def test_parts_are_contiguous_balanced_and_aligned():
    for n in range(0, 40):
        for size in (1, 2, 3, 5):
            for align in (1, 4, 6):
                ranges = D.parts(n, size, align)
                assert len(ranges) == size and ranges[0].start == 0 and ranges[-1].stop == n
                assert all(a.stop == b.start for a, b in zip(ranges, ranges[1:]))
                assert all(r.start % align == 0 for r in ranges if len(r))
                blocks = [-(-len(r) // align) for r in ranges]
                assert max(blocks) - min(blocks) <= 1
    assert D.parts(17, 2, 4) == [range(0, 12), range(12, 17)]


def test_stage_4_batches_split_contiguously_balanced_by_frames():
    for weights in ([8] * 8, [32, 32, 8], [5], [16, 8, 8, 8, 8], [1] * 7):
        for size in (1, 2, 3, 4):
            ranges = D.weighted_parts(weights, size)
            assert ranges[0].start == 0 and ranges[-1].stop == len(weights)
            assert all(a.stop == b.start for a, b in zip(ranges, ranges[1:]))
            loads = [sum(weights[i] for i in r) for r in ranges]
            assert max(loads) - sum(weights) / size <= max(weights)  # off the mean by at most one batch
    assert D.weighted_parts([32, 32], 2) == [range(0, 1), range(1, 2)]


def test_without_torchrun_every_helper_is_one_process():
    assert D.current() == D.World() and D.env_world({}) == D.World()
    x = torch.arange(6.0).reshape(3, 2)
    assert D.gather_rows(x, 3) is x and D.broadcast_object([1]) == [1] and D.part(5) == range(5)


@pytest.mark.slow
def test_two_ranks_stage_1_and_2_equal_one_process(setup, two):
    for k in (1, 2):
        assert max_diff(latents(setup["one"], k), latents(two, k)) <= 1e-5, k
    # masks, and the frames every rank decoded its share of, are gathered
    assert max_diff(latents(setup["one"], 1), latents(two, 1)) == 0.0
    assert not (two / "vidtune.lock").exists()


@pytest.mark.slow
def test_two_ranks_stage_3_same_losses_and_weights(setup, two):
    a, b = losses(setup["one"]), losses(two)
    assert len(a) == len(b) == 4
    assert max(abs(x - y) / abs(x) for x, y in zip(a, b)) <= 1e-4
    assert rel_diff(lora(setup["one"]), lora(two)) <= 1e-4
    assert lora(setup["one"]).keys() and rel_diff(lora(setup["one"]), {k: 0 * v for k, v in lora(two).items()}) > 0.1


@pytest.mark.slow
def test_two_ranks_stage_4_equals_one_process(setup, two):
    # the whole chain: stage 3's last-bit differences (1e-4 relative at most) reach stage 4
    assert max_diff(latents(setup["one"], 4), latents(two, 4)) <= 1e-4
    # stage 4 alone, on the one-process run's stages 1-3: within 1e-5
    again = setup["root"] / "stage4_only"
    shutil.copytree(setup["one"], again)
    shutil.rmtree(again / "stage4")
    (again / "final.mp4").unlink()
    torchrun(["run", "run.toml", "--out", str(again), "--stages", "4", "--quiet"], setup["root"])
    assert max_diff(latents(setup["one"], 4), latents(again, 4)) <= 1e-5


@pytest.mark.slow
def test_resume_with_another_number_of_processes(setup):
    """Stages 1-3 (two tuning steps) in one process, then the full run over two: stages 1-2 are kept,
    stage 3 resumes from step 2 on both ranks, and the result equals the uninterrupted run."""
    run = setup["root"] / "resumed"
    assert main(["run", str(setup["root"] / "half.toml"), "--out", str(run), "--stages", "1,2,3", "--quiet"]) == 0
    out = torchrun(["run", "run.toml", "--out", str(run)], setup["root"])
    assert "stage 1 skipped (done)" in out.stdout and "stage 2 skipped (done)" in out.stdout
    assert out.stdout.count("stage 4 (co-denoising) done") == 1  # rank 0 alone prints
    info = (run / "stage3" / "tuning.json").read_text()
    assert '"resumed_from": 2' in info
    a, b = losses(setup["one"]), losses(run)
    assert max(abs(x - y) / abs(x) for x, y in zip(a, b)) <= 1e-4 and len(b) == 4
    assert rel_diff(lora(setup["one"]), lora(run)) <= 1e-4
    assert max_diff(latents(setup["one"], 4), latents(run, 4)) <= 1e-4


FAILING_RANK = """
import sys
from vidtune.stages import separate

def generate(*args, **kwargs):
    raise RuntimeError("injected failure on rank 1")

import os
if os.environ["RANK"] == "1":
    separate.generate = generate
from vidtune.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_rank_that_raises_stops_every_rank_with_status_2(setup, tmp_path):
    """Rank 1 raises in stage 1 while rank 0 waits for it in the first gather: both exit 2, no hang,
    and the one-line message names the rank (the processes are started as torchrun starts them)."""
    script = tmp_path / "fail.py"
    script.write_text(FAILING_RANK)
    env = dict(env_one_thread(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), WORLD_SIZE="2")
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), "run", "run.toml", "--out", str(tmp_path / "failed"), "--quiet"],
            cwd=setup["root"],
            env=dict(env, RANK=str(r), LOCAL_RANK=str(r)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [2, 2], outs
    assert "vidtune: error: rank 1 of 2: RuntimeError: injected failure on rank 1" in outs[1][1]
    assert "Traceback" not in outs[0][1] + outs[1][1]
    assert not (tmp_path / "failed" / "stage1" / "done.json").exists()
