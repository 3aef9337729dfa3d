"""`vidtune evaluate` on a folder of one frame says why every metric is a dash."""

import cv2
import numpy as np

from vidtune.cli import main


def _png() -> bytes:
    ok, buf = cv2.imencode(".png", np.full((16, 16, 3), 128, np.uint8))
    return buf.tobytes()


def test_evaluate_one_frame_explains_the_dashes(tmp_path, capsys):
    frames = tmp_path / "one"
    frames.mkdir()
    (frames / "f_0.png").write_bytes(_png())
    assert main(["evaluate", str(frames)]) == 0
    assert "one frame: every metric compares consecutive frames" in capsys.readouterr().out
