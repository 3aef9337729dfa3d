"""What stage 1's result depends on beyond the config: the inputs' content and the weights' identity.

The config names paths; a pose file edited in place, or new weights saved at the same model path,
leave the config (and so `config.stage_hash`) unchanged while the right result changes. The run
folder therefore also keys its done markers on `inputs_key`: a hash of the prepared inputs
(pose images, keypoints, per-frame prompts, fps) and of every model file's name, size and
modification time (reading the weights themselves would take minutes for SD); a model card's
documents are left out.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from vidtune.config import ModelConfig
from vidtune.inputs import VideoInputs


def _hash_array(h: hashlib._Hash, name: str, array: np.ndarray | None) -> None:
    h.update(name.encode())
    if array is None:
        h.update(b"none")
        return
    a = np.ascontiguousarray(array)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))


def inputs_digest(inputs: VideoInputs) -> str:
    """sha256 of what conditions every frame: pose images, keypoints, prompts and fps."""
    h = hashlib.sha256()
    _hash_array(h, "pose_images", inputs.pose_images)
    _hash_array(h, "keypoints", inputs.keypoints)
    h.update(json.dumps({"prompts": inputs.prompts, "fps": inputs.fps}).encode())
    return h.hexdigest()


# Files no loader reads: a model card, its tables and pictures. Editing them leaves every result as it was.
DOCUMENT_SUFFIXES = frozenset({".md", ".csv", ".png", ".jpg", ".jpeg", ".gif"})


def folder_identity(folder: Path) -> list[tuple[str, int, int]]:
    """(relative path, size, mtime in ns) of every file under ``folder`` (links followed) but hidden ones and
    documents (`DOCUMENT_SUFFIXES`), sorted."""
    entries = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() in DOCUMENT_SUFFIXES:
                continue
            path = Path(root) / name
            try:
                st = path.stat()
            except OSError:
                continue
            entries.append((str(path.relative_to(folder)), st.st_size, st.st_mtime_ns))
    return sorted(entries)


def source_identity(source: str, probe: str) -> object:
    """A local folder's file list, a cached hub snapshot's file list, or the hub id itself."""
    from vidtune.models import local_folder

    if not source:
        return None
    folder = local_folder(source, probe)
    if folder is None:
        return source
    return {"folder": str(folder.resolve()), "files": folder_identity(folder)}


def model_identity(cfg: ModelConfig) -> dict[str, object]:
    """The identity of the model, adapter and SAM weights a run loads (see the module docstring).

    An empty adapter / sam means the model folder's own adapter/ and sam/, already in its file list.
    """
    return {
        "model": source_identity(cfg.path, "model_index.json"),
        "adapter": source_identity(cfg.adapter, "config.json"),
        "sam": source_identity(cfg.sam, "config.json"),
    }


def inputs_key(inputs: VideoInputs, model: ModelConfig) -> str:
    """The key every done marker of a run carries: inputs' content + model identity, 16 hex digits."""
    h = hashlib.sha256(inputs_digest(inputs).encode())
    h.update(json.dumps(model_identity(model), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]
