"""Stage 4's time per denoising step over 1 and K processes (torch.distributed), and its communication.

    python bench/distributed.py [--frames 64] [--steps 8] [--procs 1,2] [--out bench/results/distributed.md]

Runs stage 4 (from noise, `codenoise.background = "free"`: no stages 1-3 needed) of the demo model on
`--frames` frames under `torchrun --nproc-per-node K` for every K in `--procs`, each process on one
thread (gloo on the CPU; `--device cuda` for NCCL on a machine with several GPUs). Per K: seconds per
step (the median over the steps after the first), the seconds per step spent in collectives (the
all-reduce of the merge accumulators) and the speed-up over one process. Every K must give the same
latents (the largest difference to K = 1 is printed too).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "a red figure walking on a snowy field during the day"


def worker(args: argparse.Namespace) -> None:
    """One process of the run (started by torchrun): stage 4 timed step by step; rank 0 writes the numbers."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    from vidtune import distributed as D
    from vidtune.api import VidtunePipeline
    from vidtune.config import apply_overrides, stage_config
    from vidtune.inputs import VideoInputs
    from vidtune.stages import codenoise
    from vidtune.stages.common import conditioning

    with D.launch(args.device) as world:
        pipe = VidtunePipeline.from_pretrained("demo")
        pipe.to(args.device if args.device != "auto" else "cpu")
        cfg = apply_overrides(
            pipe.config,
            [
                f"sampling.steps={args.steps}",
                "codenoise.init=noise",
                "codenoise.background=free",
                f"inputs.prompt={PROMPT}",
                f"codenoise.max_batch_frames={args.max_batch_frames}",
            ],
        )
        c = cfg.inputs
        rng = np.random.default_rng(0)
        poses = (rng.random((args.frames, c.height, c.width, 3)) > 0.97).astype(np.uint8) * 255
        prompts = [PROMPT] * args.frames
        inputs = VideoInputs(pose_images=poses, keypoints=None, prompts=prompts, fps=8.0, summary="bench")
        comps = pipe.components
        cond = conditioning(comps, poses, prompts, c.negative_prompt, cfg.sampling.adapter_scale)
        stamps: list[float] = []
        comm: list[float] = []

        def tick(stage: int, step: int, t: int, latents: torch.Tensor) -> None:
            stamps.append(time.perf_counter())
            comm.append(D.STATS.seconds)

        D.barrier()
        D.STATS.reset()
        stamps.append(time.perf_counter())
        comm.append(0.0)
        result = codenoise.run(stage_config(cfg, 4), comps, inputs, cond, None, callback=tick, progress=False)
        if world.is_main:
            steps = [b - a for a, b in zip(stamps, stamps[1:])][1:]  # the first step warms up
            comms = [b - a for a, b in zip(comm, comm[1:])][1:]
            Path(args.result).write_text(
                json.dumps(
                    {
                        "procs": world.size,
                        "step_s": statistics.median(steps),
                        "comm_s": statistics.median(comms),
                        "clips": result.info["clips"],
                        "mode": getattr(cfg.codenoise, "mode", "overlap"),
                    }
                )
            )
            torch.save(result.x0, Path(args.result).with_suffix(".pt"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--procs", default="1,2")
    parser.add_argument("--max-batch-frames", type=int, default=16, help="codenoise.max_batch_frames (demo: 32)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="bench/results/distributed.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    import torch

    rows = []
    torchrun = Path(sys.executable).with_name("torchrun")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        for k in [int(p) for p in args.procs.split(",")]:
            result = Path(tmp) / f"k{k}.json"
            cmd = [str(torchrun), "--nproc-per-node", str(k), __file__, "--worker", "--result", str(result)]
            cmd += ["--frames", str(args.frames), "--steps", str(args.steps), "--device", args.device]
            cmd += ["--max-batch-frames", str(args.max_batch_frames)]
            subprocess.run(cmd, check=True, env=env, capture_output=True)
            row = json.loads(result.read_text())
            row["x0"] = torch.load(result.with_suffix(".pt"))
            rows.append(row)
    base = rows[0]
    lines = [
        f"# Stage 4 over torch.distributed ({args.device}, {'gloo' if args.device == 'cpu' else 'nccl'})",
        "",
        f"`python bench/distributed.py --frames {args.frames} --steps {args.steps} --procs {args.procs} "
        f"--max-batch-frames {args.max_batch_frames}`: the demo "
        f"model, {args.frames} frames, stage 4 mode `{base['mode']}` ({base['clips']} clips at the first step), "
        "one thread per process, median seconds per step after the first.",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}.",
        "",
        "| processes | s / step | speed-up | communication s / step | max abs latent difference to 1 process |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        diff = float((r["x0"] - base["x0"]).abs().max())
        lines.append(
            f"| {r['procs']} | {r['step_s']:.3f} | {base['step_s'] / r['step_s']:.2f} | {r['comm_s']:.4f} | {diff:.1e} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
