"""OpenPose JSON (BODY_25 or COCO-18) parsed into people's COCO-18 keypoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from vidtune.errors import VidtuneError
from vidtune.poses.layout import (
    BODY25_TO_COCO18,
    NUM_KEYPOINTS,
)

# --- parsing ---------------------------------------------------------------------------------


def parse_openpose_json(path: str | Path) -> tuple[np.ndarray, int]:
    """Read one OpenPose ``--write_json`` file.

    Returns:
        ``(people, n)``: ``people`` is ``(P, 18, 3)`` float32 COCO-18 ``(x, y, conf)`` (BODY_25
        converted with :data:`BODY25_TO_COCO18`), ``n`` the keypoints per person in the file
        (25 or 18; 0 when the file has nobody).

    Raises:
        VidtuneError: malformed JSON, no ``people`` list, or a keypoint list whose length is not
            75 (BODY_25) or 54 (COCO-18).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise VidtuneError(f"{path}: not valid JSON ({e}); re-export it with OpenPose --write_json") from e
    people = data.get("people") if isinstance(data, dict) else None
    if not isinstance(people, list):
        raise VidtuneError(f'{path}: no "people" list; this is not an OpenPose --write_json keypoint file')
    out, n_kp = [], 0
    for k, person in enumerate(people):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        if not isinstance(flat, list):
            raise VidtuneError(
                f'{path}: person {k} has no "pose_keypoints_2d" list; re-export with OpenPose --write_json'
            )
        if len(flat) == 75:
            n = 25
        elif len(flat) == 54:
            n = 18
        else:
            raise VidtuneError(
                f"{path}: person {k} has a pose_keypoints_2d list of length {len(flat)};"
                " expected 75 (BODY_25) or 54 (COCO-18) numbers"
            )
        if n_kp and n != n_kp:
            raise VidtuneError(
                f"{path}: people with both BODY_25 and COCO-18 keypoints in one file; re-export with one model"
            )
        n_kp = n
        try:
            arr = np.asarray(flat, dtype=np.float32).reshape(n, 3)
        except (TypeError, ValueError) as e:
            raise VidtuneError(
                f"{path}: person {k} has non-numeric keypoints; re-export with OpenPose --write_json"
            ) from e
        if n == 25:
            arr = arr[list(BODY25_TO_COCO18)]
        arr[~np.isfinite(arr).all(axis=1)] = 0.0
        out.append(arr)
    people_arr = np.stack(out) if out else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)
    return people_arr, n_kp
