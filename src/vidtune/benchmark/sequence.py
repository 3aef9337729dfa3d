"""One benchmark sequence's run: where its variants put their frames (`SequenceRun`), shared by the
runner that fills it and the scoring that reads it, and the file linking both use."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vidtune.benchmark.spec import SequenceSpec


def link_or_copy(path: Path, target: Path) -> None:
    """Hard-link the file `path` as `target` (a copy where the file system refuses links)."""
    try:
        os.link(path, target)
    except OSError:
        shutil.copy2(path, target)


@dataclass
class SequenceRun:
    """Where one sequence's variants put their frames, and what each cost (seconds of its stages)."""

    spec: SequenceSpec
    root: Path
    truth: Any
    frames: dict[str, Path] = field(default_factory=dict)
    windows: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    unet: dict[str, str] = field(default_factory=dict)
    transition: int = 0  # the schedule's transition width (codenoise.transition) the truth was rendered with
