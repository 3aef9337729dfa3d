"""Prompt schedules (pure): one prompt, a per-clip list or ``{start_frame: prompt}`` ranges, and the
prompt of every frame and every clip they give (docs/method.md, stage 4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from vidtune.errors import VidtuneError
from vidtune.method.windows import Window, _check_windows, _positive_int

if TYPE_CHECKING:
    from vidtune.config import InputConfig

PromptSchedule = str | Sequence[str] | Mapping[int | str, str]


def prompt_schedule(cfg: InputConfig) -> str | list[str] | dict[int, str]:
    """The prompt schedule the config describes: ranges > per-clip list > one prompt."""
    if cfg.prompts:
        try:
            return {int(k): v for k, v in cfg.prompts.items()}
        except ValueError:
            raise VidtuneError(f"inputs.prompts: keys must be first-frame numbers, got {list(cfg.prompts)}") from None
    if cfg.clip_prompts:
        return list(cfg.clip_prompts)
    if not cfg.prompt:
        raise VidtuneError("inputs.prompt is empty: pass --prompt TEXT or set [inputs] prompt in the config")
    return cfg.prompt


def per_frame_prompts(
    num_frames: int, schedule: str | list[str] | dict[int, str], windows: list[tuple[int, int]] | None = None
) -> list[str]:
    """Each frame's prompt for the per-frame stages; a per-clip list maps a frame to the clip
    whose centre is nearest (the windows must be given for that)."""
    if isinstance(schedule, list):
        if windows is None or len(windows) != len(schedule):
            count = "?" if windows is None else len(windows)
            raise VidtuneError(
                f"inputs.clip_prompts has {len(schedule)} prompts but stage 4 makes {count} clips; "
                "give one prompt per clip or use inputs.prompts ranges"
            )
        centres = np.array([(s + e - 1) / 2 for s, e in windows])
        return [schedule[int(np.argmin(np.abs(centres - f)))] for f in range(num_frames)]
    return frame_prompts(num_frames, schedule)


def majority_prompts(windows: Sequence[Window], frame_prompts: Sequence[str]) -> list[str]:
    """One prompt per clip: the prompt most of its frames have (ties: the one that comes first in the clip).

    For shifted clips, whose frames may straddle a prompt schedule's segments differently at every step."""
    if not windows:
        raise ValueError("windows: need at least one clip window")
    _check_windows(windows, len(frame_prompts))
    out = []
    for start, end in windows:
        counts: dict[str, int] = {}
        for p in frame_prompts[start:end]:
            counts[p] = counts.get(p, 0) + 1
        out.append(max(counts, key=lambda p: counts[p]))  # max keeps the first of equal counts
    return out


def schedule_segments(schedule: Mapping[int | str, str], num_frames: int) -> list[tuple[int, int, str]]:
    """{start_frame: prompt} -> sorted ``(start, end, prompt)`` ranges covering 0..num_frames."""
    if len(schedule) == 0:
        raise VidtuneError("inputs.prompts: the {start_frame: prompt} schedule is empty; give at least {0: prompt}")
    starts: dict[int, str] = {}
    for key, prompt in schedule.items():
        if isinstance(key, str) and key.strip().isdigit():
            start = int(key.strip())
        elif isinstance(key, int) and not isinstance(key, bool):
            start = key
        else:
            raise VidtuneError(f"inputs.prompts: schedule key {key!r} is not a frame number (an integer >= 0)")
        if not isinstance(prompt, str):
            raise VidtuneError(f"inputs.prompts: schedule entry {key!r} must be a string, got {prompt!r}")
        if not prompt.strip():
            raise VidtuneError(
                f"inputs.prompts: the prompt of frame {key!r} is empty; give it a text or remove the entry"
            )
        if start < 0:
            raise VidtuneError(f"inputs.prompts: schedule key {key!r} is negative; frames count from 0")
        if start in starts:
            raise VidtuneError(f"inputs.prompts: frame {start} starts two schedule entries")
        if start >= num_frames:
            raise VidtuneError(
                f"inputs.prompts: schedule entry {key!r} starts at frame {start} but the video has only "
                f"{num_frames} frames (0-{num_frames - 1}); remove it or lower its frame"
            )
        starts[start] = prompt
    ordered = sorted(starts)
    if ordered[0] != 0:
        raise VidtuneError(
            f"inputs.prompts: the schedule starts at frame {ordered[0]}, so frames 0-{ordered[0] - 1} have no prompt; "
            f"add an entry for frame 0"
        )
    ends = ordered[1:] + [num_frames]
    return [(s, e, starts[s]) for s, e in zip(ordered, ends)]


def assign_prompts(windows: Sequence[Window], schedule: PromptSchedule) -> list[str]:
    """One prompt per clip.

    ``schedule`` is one prompt (every clip), a list with one prompt per clip (its length must equal
    the number of clips) or a ``{start_frame: prompt}`` dict of frame ranges, each running until
    the next key and the first starting at frame 0 (keys may be digit strings, as TOML writes
    them). With ranges, each clip takes the prompt that holds most of its frames; ties go to the
    earlier range.
    """
    if len(windows) == 0:
        raise ValueError("windows: need at least one clip window")
    num_frames = max(end for _, end in windows)
    _check_windows(windows, num_frames)
    if isinstance(schedule, str):
        return [schedule] * len(windows)
    if isinstance(schedule, Mapping):
        segments = schedule_segments(schedule, num_frames)
        prompts = []
        for start, end in windows:
            overlaps = [max(0, min(end, e) - max(start, s)) for s, e, _ in segments]
            best = max(range(len(segments)), key=lambda i: (overlaps[i], -i))  # ties -> earlier
            prompts.append(segments[best][2])
        return prompts
    if isinstance(schedule, Sequence):
        if not all(isinstance(p, str) for p in schedule):
            raise VidtuneError("prompt: a per-clip prompt list must hold strings only")
        if len(schedule) != len(windows):
            raise VidtuneError(
                f"prompt: the per-clip prompt list has {len(schedule)} prompts but the video has "
                f"{len(windows)} clips; give exactly {len(windows)} (or a {{start_frame: prompt}} schedule)"
            )
        return list(schedule)
    raise VidtuneError(
        f"prompt: expected a string, a list of strings or a {{start_frame: prompt}} dict, got {type(schedule).__name__}"
    )


def frame_prompts(num_frames: int, schedule: str | Mapping[int | str, str]) -> list[str]:
    """One prompt per frame, for the per-frame stages (1-3): a single prompt or ``{start_frame: prompt}`` ranges.

    A per-clip list is not valid here: clips exist only in stage 4.
    """
    num_frames = _positive_int(num_frames, "num_frames")
    if isinstance(schedule, str):
        return [schedule] * num_frames
    if isinstance(schedule, Mapping):
        prompts: list[str] = []
        for start, end, prompt in schedule_segments(schedule, num_frames):
            prompts += [prompt] * (end - start)
        return prompts
    if isinstance(schedule, Sequence):
        raise VidtuneError(
            "prompt: a per-clip prompt list only applies to stage 4's clips; the per-frame stages need "
            "one prompt or a {start_frame: prompt} schedule (inputs.prompt / inputs.prompts)"
        )
    raise VidtuneError(f"prompt: expected a string or a {{start_frame: prompt}} dict, got {type(schedule).__name__}")
