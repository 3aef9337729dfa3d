"""The run folder: where every artifact lives, which stages are done, and the resume rule.

A stage is done when its `done.json` exists and holds the hash of the config fields it depends
on (`config.stage_hash`). A rerun skips done stages; a stage that (re)runs invalidates every later
stage, so changing a field of stage k reruns k and what follows, nothing before it.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from vidtune import atomic
from vidtune.config import RunConfig, stage_hash, to_toml
from vidtune.errors import VidtuneError

STAGES = (1, 2, 3, 4)


class RunDir:
    """Paths and stage status of one run folder (`runs/<name>/`, design §4)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise VidtuneError(f"{self.root}: the output folder is a file; pass --out with a folder path")
        self.root.mkdir(parents=True, exist_ok=True)

    # --- paths -----------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.root / "config.toml"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def final_video(self) -> Path:
        return self.root / "final.mp4"

    def stage(self, k: int) -> Path:
        """The folder of stage k (`stage1/` ...)."""
        return self.root / f"stage{k}"

    def done_path(self, k: int) -> Path:
        return self.stage(k) / "done.json"

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
        """True when stage k finished with the same relevant config."""
        info = self.done_info(k)
        return info is not None and info.get("config_hash") == stage_hash(cfg, k)

    def begin(self, k: int) -> None:
        """Mark stage k (and every later stage) as not done before it runs."""
        for later in STAGES:
            if later >= k and self.done_path(later).exists():
                self.done_path(later).unlink()
        self.stage(k).mkdir(parents=True, exist_ok=True)

    def mark_done(self, k: int, cfg: RunConfig, seconds: float, **info: Any) -> None:
        """Write stage k's done.json (atomically, last, so it only exists when all else does)."""
        payload = {"stage": k, "config_hash": stage_hash(cfg, k), "seconds": round(seconds, 3),
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S"), **info}
        atomic.write_json(self.done_path(k), payload)

    def save_config(self, cfg: RunConfig) -> None:
        """Write the resolved config (every default) as config.toml."""
        atomic.write_text(self.config_path, to_toml(cfg))

    def clear_stage(self, k: int) -> None:
        """Remove stage k's folder entirely (used when its outputs must be rebuilt from scratch)."""
        if self.stage(k).exists():
            shutil.rmtree(self.stage(k))
