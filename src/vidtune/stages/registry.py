"""The stages as one registry: `STAGES[k]` is stage k's number, name, title, config view, what it needs,
what it returns, where its video goes and how it runs. `vidtune.pipeline` iterates it."""

from __future__ import annotations

from vidtune.config import STAGE_NUMBERS, stage_view
from vidtune.stages.codenoise import CodenoiseStage
from vidtune.stages.common import Stage, StageContext
from vidtune.stages.fusion import FusionStage
from vidtune.stages.separate import SeparateStage
from vidtune.stages.tuning import TuningStage

__all__ = ["STAGES", "Stage", "StageContext"]

STAGES: dict[int, Stage] = {s.number: s for s in (SeparateStage(), FusionStage(), TuningStage(), CodenoiseStage())}
if tuple(STAGES) != STAGE_NUMBERS or any(STAGES[k].view is not stage_view(k) for k in STAGES):
    raise RuntimeError("vidtune.config.STAGE_VIEWS and the stage registry disagree on the stages' order")
