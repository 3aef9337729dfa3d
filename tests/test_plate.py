"""The pixel-space background plate (vidtune.method.plate): what it snaps to the plate, what it never touches."""

from __future__ import annotations

import numpy as np
import pytest

from vidtune.method.plate import PlateConfig, composite

N, H, W = 8, 24, 32


def _video(seed: int = 0, jitter: int = 3):
    """A textured static background with decoder-like jitter (+-`jitter` grey levels) and a bright
    square figure walking left to right; its masks."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(60, 190, size=(H, W, 3))
    frames = np.repeat(bg[None], N, axis=0) + rng.integers(-jitter, jitter + 1, size=(N, H, W, 3))
    masks = np.zeros((N, H, W), np.float32)
    for i in range(N):
        x = 2 + 3 * i
        frames[i, 8:16, x : x + 6] = (250, 20, 200)
        masks[i, 8:16, x : x + 6] = 1.0
    return frames.clip(0, 255).astype(np.uint8), masks, bg


def test_background_jitter_is_removed_and_the_figure_is_untouched():
    frames, masks, _ = _video()
    out = composite(frames, masks, PlateConfig(dilate=1))
    bg = (masks[:-1] == 0) & (masks[1:] == 0)
    before = np.abs(np.diff(frames.astype(int), axis=0)).max(-1)[bg].mean()
    after = np.abs(np.diff(out.astype(int), axis=0)).max(-1)[bg].mean()
    assert before > 2 and after < 0.6
    fg = masks > 0
    assert np.array_equal(out[fg], frames[fg])


def test_a_figure_the_mask_misses_is_kept_not_painted_over():
    frames, masks, _ = _video()
    missed = masks.copy()
    missed[:, 12:16] = 0  # the segmenter lost the figure's lower half (a leg): no mask there
    out = composite(frames, missed, PlateConfig(dilate=0))
    lost = (masks > 0) & (missed == 0)
    assert np.abs(out[lost].astype(int) - frames[lost]).max() <= 1  # kept: it is far from the plate
    assert (out[lost] == (250, 20, 200)).all(axis=-1).mean() > 0.99  # solid, not translucent


@pytest.mark.parametrize("transition", [0, 4])
def test_segments_keep_their_own_plate(transition):
    frames, masks, bg = _video()
    far = np.zeros((H, W), bool)
    far[:, 30:] = True  # never covered by the figure (it reaches column 28)
    frames[4:, far] = 255 - frames[4:, far]  # another scene from frame 4 on
    out = composite(frames, masks, PlateConfig(), segments=[(0, 4), (4, N)], transition=transition).astype(int)
    a, b = (4, 4) if transition == 0 else (3, 5)  # with a transition, frames 3 and 4 dissolve the two scenes
    assert np.abs(out[:a, far] - bg[far]).max() <= 3  # each segment's own background, no leak of the other
    assert np.abs(out[b:, far] - (255 - bg[far])).max() <= 3
    assert (out[:a, far] == out[0, far]).all() and (out[b:, far] == out[N - 1, far]).all()  # one plate each


def test_a_transition_dissolves_the_two_plates_and_keeps_the_figure_solid():
    """Frames 3 and 4 of a 4-frame transition show 3/4 + 1/4 of their own scene's plate and the next
    one's (a cross-fade of two clean pictures), whatever decoding drew there; the figure and a limb
    the mask misses keep their own pixels."""
    frames, masks, bg = _video(jitter=0)
    other = 255 - bg
    frames[4:] = np.where(masks[4:, ..., None] > 0, frames[4:], other)  # scene B from frame 4 on
    missed = masks.copy()
    missed[:, 12:16] = 0  # a leg the segmenter lost
    out = composite(frames, missed, PlateConfig(dilate=0), segments=[(0, 4), (4, N)], transition=4).astype(int)
    far = masks.max(axis=0) == 0  # background in every frame (where the lost leg was, the plates are mixed)
    assert np.abs(out[3][far] - (0.75 * bg + 0.25 * other)[far]).max() <= 1
    assert np.abs(out[4][far] - (0.25 * bg + 0.75 * other)[far]).max() <= 1
    for i in (3, 4):
        lost = (masks[i] > 0) & (missed[i] == 0)
        assert (out[i][lost] == (250, 20, 200)).all()  # solid, not dissolved with the scenes


def test_the_figures_brightness_moves_with_the_transition():
    """Scene B lights the figure at half brightness: the figure goes 3/4 A + 1/4 B, 1/4 A + 3/4 B bright
    over a 4-frame transition instead of cutting, and stays its own outside the transition."""
    frames, masks, bg = _video(jitter=0)
    fig = masks > 0
    frames[4:][fig[4:]] = (125, 10, 100)
    out = composite(frames, masks, PlateConfig(dilate=0), segments=[(0, 4), (4, N)], transition=4).astype(int)
    assert np.abs(out[3][fig[3]] - np.array([250, 20, 200]) * (0.75 + 0.25 * 0.5)).max() <= 0.5
    assert np.abs(out[4][fig[4]] - np.array([125, 10, 100]) * (0.25 * 2 + 0.75)).max() <= 0.5
    assert (out[2][fig[2]] == (250, 20, 200)).all() and (out[5][fig[5]] == (125, 10, 100)).all()


def test_disabled_is_the_identity_and_chunking_changes_nothing():
    frames, masks, _ = _video(seed=1)
    assert composite(frames, masks, PlateConfig(enabled=False)) is frames
    a = composite(frames, masks, PlateConfig(chunk=3), segments=[(0, 5), (5, N)], transition=4)
    b = composite(frames, masks, PlateConfig(chunk=64), segments=[(0, 5), (5, N)], transition=4)
    assert np.abs(a.astype(int) - b).max() <= 1  # float sums in another order: at most a rounding step


def test_bad_shapes_and_key_are_errors():
    frames, masks, _ = _video()
    with pytest.raises(ValueError, match="masks must be"):
        composite(frames, masks[:, :-1], PlateConfig())
    with pytest.raises(ValueError, match="key_high"):
        composite(frames, masks, PlateConfig(key_low=20, key_high=10))
