"""The run folder: where every artifact lives, which stages are done, and the resume rule.

A stage is done when its `done.json` exists and holds the hash of the config fields it depends
on (`config.stage_hash`) and, when the run folder was opened with one, the key of the inputs
(`inputs_key`: the content of the poses, prompts and the model weights' identity). A rerun skips
done stages; a stage that (re)runs invalidates every later stage (and removes the stale
final.mp4), so changing a field of stage k reruns k and what follows, nothing before it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidtune import artifacts as A
from vidtune import atomic
from vidtune.config import RunConfig, portable, stage_hash, to_toml
from vidtune.errors import VidtuneError


@dataclass(frozen=True)
class Removed:
    """What `RunDir.clean_temporaries` did: the paths removed (or restored) and the bytes freed."""

    paths: list[Path]
    restored: list[Path]
    nbytes: int


def _size(path: Path) -> int:
    """Bytes under ``path`` (a file or a folder tree; links not followed)."""
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


class RunDir:
    """Paths and stage status of one run folder (`runs/<name>/`, docs/usage.md).

    ``inputs_key`` (set by `pipeline.run`) is stored in every done.json; a stage whose done.json
    holds another key is not done. None (the stages' own tests) checks the config hash only.
    """

    def __init__(self, root: str | Path, inputs_key: str | None = None) -> None:
        self.root = Path(root)
        self.inputs_key = inputs_key
        if self.root.exists() and not self.root.is_dir():
            raise VidtuneError(f"{self.root}: the output folder is a file; pass --out with a folder path")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VidtuneError(
                f"{self.root}: cannot create the run folder ({exc.strerror or exc}); "
                f"pass --out with a folder in a writable place"
            ) from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise VidtuneError(f"{self.root}: the run folder is not writable; pass --out with a writable folder")

    # --- paths -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / A.CONFIG

    @property
    def inputs(self) -> Path:
        return self.root / A.INPUTS

    @property
    def final_video(self) -> Path:
        return self.root / A.FINAL_VIDEO

    def stage(self, k: int) -> Path:
        """The folder of stage k (`stage1/` ...)."""
        return self.root / A.stage_dir(k)

    def frames(self, k: int) -> Path:
        """The decoded frames of stage k (PNG folder)."""
        return self.stage(k) / A.FRAMES

    def masks(self) -> Path:
        """Stage 1's foreground masks (PNG folder)."""
        return self.stage(1) / A.MASKS

    def done_path(self, k: int) -> Path:
        return self.stage(k) / A.DONE

    # --- status ----------------------------------------------------------------------------
    def done_info(self, k: int) -> dict[str, Any] | None:
        """The contents of stage k's done.json, or None when the stage never finished."""
        path = self.done_path(k)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def is_done(self, k: int, cfg: RunConfig) -> bool:
        """True when stage k finished with the same relevant config (and the same inputs)."""
        info = self.done_info(k)
        if info is None or info.get("config_hash") != stage_hash(cfg, k):
            return False
        return self.inputs_key is None or info.get("inputs_key") == self.inputs_key

    def begin(self, k: int) -> list[Path]:
        """Mark stage k (and every later stage) as not done before it runs; the final video of
        an invalidated stage 4 is removed too (it no longer matches). Returns what was removed."""
        removed = []
        for marker in sorted(self.root.glob(f"*/{A.DONE}")):
            later = A.stage_of(marker.parent.name)
            if later is not None and later >= k:
                marker.unlink()
                removed.append(marker)
        final = self.final_video
        for video in (final, A.lossless_video(final), A.gif_preview(final), A.video_record(final)):
            if video.exists():
                video.unlink()
                removed.append(video)
        self.stage(k).mkdir(parents=True, exist_ok=True)
        return removed

    def mark_done(self, k: int, cfg: RunConfig, seconds: float, **info: Any) -> None:
        """Write stage k's done.json (atomically, last, so it only exists when all else does)."""
        payload = {
            "stage": k,
            "config_hash": stage_hash(cfg, k),
            "seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            **info,
        }
        if self.inputs_key is not None:
            payload["inputs_key"] = self.inputs_key
        atomic.write_json(self.done_path(k), payload)

    def clean_temporaries(self) -> Removed:
        """Remove what killed runs left (atomic writes' temporaries; call under the run lock only).

        A ``.NAME.old`` folder whose NAME is missing is the previous NAME of a swap that was cut
        between its two renames: it is put back (the done markers decide whether it is current).
        """
        removed, restored, nbytes = [], [], 0
        for path in self._walk():
            target = atomic.old_target(path.name)
            if target is not None and not (path.parent / target).exists():
                os.replace(path, path.parent / target)
                restored.append(path.parent / target)
            elif target is not None or atomic.is_temporary(path.name):
                nbytes += _size(path)
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                removed.append(path)
        return Removed(paths=removed, restored=restored, nbytes=nbytes)

    def _walk(self) -> list[Path]:
        """Every temporary-looking entry under the root (not descending into them)."""
        found = []
        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            for name in list(dirs):
                if atomic.is_temporary(name) or atomic.old_target(name) is not None:
                    found.append(here / name)
                    dirs.remove(name)
            found += [here / n for n in files if atomic.is_temporary(n) or atomic.old_target(n) is not None]
        return found

    def save_config(self, cfg: RunConfig) -> None:
        """Write the resolved config (every default) as config.toml, its paths portable (`config.portable`):
        ``vidtune run config.toml --out .`` in the run folder reruns it anywhere."""
        atomic.write_text(self.config_path, to_toml(portable(cfg, self.root)))

    def clear_stage(self, k: int) -> None:
        """Remove stage k's folder entirely (used when its outputs must be rebuilt from scratch)."""
        if self.stage(k).exists():
            shutil.rmtree(self.stage(k))
