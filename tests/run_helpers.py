"""Helpers of the tests that run the `vidtune` command on the tiny model: a walking pose sequence,
the run arguments, the one-line error check, folder snapshots and stage statuses."""

import json
import shutil
from pathlib import Path

import numpy as np

from vidtune.cli import main
from walking import BODY25_STANDING

N = 6


def write_poses(folder: Path, n: int = N, shift: float = 0.0, frame_fn=None) -> Path:
    """A BODY_25 OpenPose JSON sequence of one walking person; `frame_fn(i, kps)` may alter frame i's (25, 3)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        kps = np.concatenate([BODY25_STANDING + [4 * i + shift, 0], np.full((25, 1), 0.9)], axis=1)
        if frame_fn is not None:
            kps = frame_fn(i, kps)
        people = [{"person_id": [-1], "pose_keypoints_2d": kps.flatten().tolist()}]
        (folder / f"clip_{i:012d}_keypoints.json").write_text(json.dumps({"version": 1.3, "people": people}))
    return folder


def run_args(model: Path, pose_dir: Path, out: Path, *extra: str) -> list[str]:
    """`vidtune run` on the tiny model, small enough for the CPU tests."""
    sets = [
        "sampling.guidance=3.0",
        "codenoise.clip_length=4",
        "codenoise.stride=2",
        "tuning.steps=2",
        "tuning.checkpoint_every=1",
        "separate.segmenter=grabcut",
    ]
    args = [
        "run",
        "--model",
        str(model),
        "--poses",
        str(pose_dir),
        "--prompt",
        "a person dancing",
        "--height",
        "32",
        "--width",
        "32",
        "--steps",
        "2",
        "--quiet",
        "--out",
        str(out),
    ]
    for s in sets:
        args += ["--set", s]
    return args + list(extra)


def one_line_error(args: list[str], capsys) -> str:
    """Run the CLI; it must exit 2 with exactly one line on stderr and no traceback. Returns the line."""
    code = main(args)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert "Traceback" not in captured.err
    # (progress bars of a loading library are not messages)
    lines = [line for line in captured.err.replace("\r", "\n").splitlines() if line.strip() and "it/s]" not in line]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("vidtune: error: ")
    return lines[0]


def snapshot(root: Path) -> dict[str, tuple[bytes, int, int]]:
    """Every file under root: content, mode and modification time."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (p.read_bytes(), st.st_mode, st.st_mtime_ns)
    return out


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def statuses(stdout: str) -> dict[int, str]:
    """Stage -> 'ran' / 'skipped (done)' from the summary line."""
    line = [ln for ln in stdout.splitlines() if ln.startswith("vidtune: stage ")][-1]
    out = {}
    for part in line.split(" -> ")[0].removeprefix("vidtune: ").split("; "):
        words = part.split()
        out[int(words[1])] = " ".join(words[2:-1])
    return out
