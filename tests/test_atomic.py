"""Unwritable, read-only and full outputs are one-line errors, and no partial file is left."""

import subprocess
from pathlib import Path

import numpy as np
import pytest

from run_helpers import one_line_error, run_args
from vidtune.cli import main


def test_unwritable_outputs_are_one_line_errors(finished, tmp_path, capsys):
    model, pose_dir, _ = finished
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert str(a_file) in one_line_error(run_args(model, pose_dir, a_file / "run"), capsys)
    assert "/proc/vidtune_x" in one_line_error(run_args(model, pose_dir, Path("/proc/vidtune_x")), capsys)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(2):
        (frames / f"f_{i}.png").write_bytes(_png())
    line = one_line_error(["evaluate", str(frames), "--json", "/proc/vidtune_x.json"], capsys)
    assert "/proc/vidtune_x.json" in line
    assert capsys.readouterr().out == ""


def _png() -> bytes:
    import cv2

    ok, buf = cv2.imencode(".png", np.full((16, 16, 3), 128, np.uint8))
    return buf.tobytes()


def _probe_tmpfs() -> str:
    """Why a tmpfs cannot be mounted here ('' when it can): decided once, at collection."""
    import tempfile

    with tempfile.TemporaryDirectory() as where:
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", where], capture_output=True, text=True
        )
        if result.returncode != 0:
            return f"cannot mount a tmpfs here ({result.stderr.strip() or 'mount failed'}): needs root"
        subprocess.run(["umount", where], check=False)
    return ""


_NO_TMPFS = _probe_tmpfs()


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(bool(_NO_TMPFS), reason=_NO_TMPFS or "tmpfs available")
def test_read_only_and_full_disks_are_one_line_errors(finished, tmp_path, capsys):
    model, pose_dir, _ = finished
    ro, full = tmp_path / "ro", tmp_path / "full"
    _mount_tmpfs(ro, "size=1m,ro")
    try:
        assert "read-only" in one_line_error(run_args(model, pose_dir, ro / "run"), capsys).lower()
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    _mount_tmpfs(full, "size=48k")
    try:
        code = main(run_args(model, pose_dir, full / "run"))
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
        ours = [line for line in err.splitlines() if line.startswith("vidtune: error: ")]
        assert len(ours) == 1 and "No space left on device" in ours[0] and str(full / "run") in ours[0], err
    finally:
        subprocess.run(["umount", str(full)], check=False)
