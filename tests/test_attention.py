"""Cross-frame attention on a tiny real UNet2DConditionModel: invariance and dependency properties."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import Attention, AttnProcessor2_0

from vidtune.method.attention import (
    ATTENTION_MODES,
    CrossFrameAttention,
    CrossFrameAttnProcessor,
    cross_frame_attention,
    group_layout,
)

TIGHT = dict(atol=1e-5, rtol=1e-5)  # same math, different matmul shapes / duplicated keys
EXACT = dict(atol=0.0, rtol=0.0)
GROUP_MODES = ["first", "middle", "sparse-causal"]


@pytest.fixture(scope="module")
def unet() -> UNet2DConditionModel:
    torch.manual_seed(0)
    model = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    return model.eval()


def frames(n: int, seed: int) -> torch.Tensor:
    """``(n, 4, 8, 8)`` random latents."""
    return torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(seed))


def text(n: int, seed: int = 100) -> torch.Tensor:
    """``(n, 5, 32)`` text embeddings, the same prompt for every frame."""
    return torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(seed)).expand(n, -1, -1)


@torch.no_grad()
def run(unet: UNet2DConditionModel, latents: torch.Tensor, emb: torch.Tensor | None = None):
    """The UNet's eps prediction ``(frames, 4, 8, 8)`` at t = 500."""
    emb = text(latents.shape[0]) if emb is None else emb
    return unet(latents, torch.tensor(500), encoder_hidden_states=emb).sample


def changed(a: torch.Tensor, b: torch.Tensor) -> bool:
    return (a - b).abs().max().item() > 1e-4


# --------------------------------------------------------------------------- layout and installation


def test_group_layout():
    layout = group_layout([3, 2])
    assert layout.group.tolist() == [0, 0, 0, 1, 1]
    assert layout.start.tolist() == [0, 0, 0, 3, 3]
    assert layout.size.tolist() == [3, 3, 3, 2, 2]
    assert ATTENTION_MODES["middle"].sources(layout).flatten().tolist() == [1, 1, 1, 4, 4]
    assert ATTENTION_MODES["sparse-causal"].sources(layout).tolist() == [[0, 0], [0, 0], [0, 1], [3, 3], [3, 3]]


def test_only_self_attention_is_replaced_and_remove_restores(unet):
    x = frames(4, 1)
    before = run(unet, x)
    originals = dict(unet.attn_processors)
    controller = CrossFrameAttention("first")
    controller.install(unet)
    installed = unet.attn_processors
    for name, processor in installed.items():
        if name.endswith("attn1.processor"):
            assert isinstance(processor, CrossFrameAttnProcessor)
        else:
            assert processor is originals[name]
    assert sum(isinstance(p, CrossFrameAttnProcessor) for p in installed.values()) == 4
    with pytest.raises(RuntimeError, match="already installed"):
        controller.install(unet)
    controller.set_groups([4])
    assert changed(run(unet, x), before)
    controller.remove()
    controller.remove()  # idempotent
    assert all(unet.attn_processors[name] is p for name, p in originals.items())
    torch.testing.assert_close(run(unet, x), before, **EXACT)


def test_context_manager_removes_on_error(unet):
    originals = dict(unet.attn_processors)
    with pytest.raises(KeyError):
        with cross_frame_attention(unet, "middle"):
            raise KeyError("boom")
    assert all(unet.attn_processors[name] is p for name, p in originals.items())


# --------------------------------------------------------------------------- invariance: equals the baseline


def test_none_equals_default_processor(unet):
    x = frames(5, 2)
    with cross_frame_attention(unet, "none"):
        out = run(unet, x)
    torch.testing.assert_close(out, run(unet, x), **EXACT)


@pytest.mark.parametrize("include_self", [False, True])
@pytest.mark.parametrize("mode", GROUP_MODES)
def test_identical_frames_in_a_group_equal_none(unet, mode, include_self):
    # groups of identical frames: every key source equals the frame itself
    x = torch.cat([frames(1, 3).expand(3, -1, -1, -1), frames(1, 4).expand(2, -1, -1, -1)])
    with cross_frame_attention(unet, mode, include_self=include_self) as xattn:
        xattn.set_groups([3, 2])
        out = run(unet, x)
    torch.testing.assert_close(out, run(unet, x), **TIGHT)


@pytest.mark.parametrize("include_self", [False, True])
def test_global_with_anchor_equal_to_the_frames_equals_none(unet, include_self):
    a = frames(1, 5)
    x = a.expand(3, -1, -1, -1)
    with cross_frame_attention(unet, "global", include_self=include_self) as xattn:
        with xattn.record_anchor():
            anchor_out = run(unet, a)
        xattn.set_groups([2, 1])
        out = run(unet, x)
    baseline = run(unet, x)
    torch.testing.assert_close(out, baseline, **TIGHT)
    torch.testing.assert_close(anchor_out, baseline[:1], **TIGHT)  # recording = plain self-attention


# --------------------------------------------------------------------------- which frames a frame depends on


def test_first_frame_dependencies(unet):
    x = frames(4, 6)
    y = x.clone()
    y[2] = frames(1, 7)[0]
    z = x.clone()
    z[0] = frames(1, 8)[0]
    with cross_frame_attention(unet, "first") as xattn:
        xattn.set_groups([4])
        out_x, out_y, out_z = run(unet, x), run(unet, y), run(unet, z)
    torch.testing.assert_close(out_y[[0, 1, 3]], out_x[[0, 1, 3]], **EXACT)  # frame 2 feeds no one else
    assert changed(out_z[2], out_x[2])  # frame 0 is every frame's key/value source
    # frame 0 attends only to itself: plain self-attention of frame 0 alone
    torch.testing.assert_close(out_x[:1], run(unet, x[:1]), **TIGHT)


def test_middle_frame_dependencies(unet):
    x = frames(4, 9)  # middle = 4 // 2 = 2
    y = x.clone()
    y[0] = frames(1, 10)[0]
    z = x.clone()
    z[2] = frames(1, 11)[0]
    with cross_frame_attention(unet, "middle") as xattn:
        xattn.set_groups([4])
        out_x, out_y, out_z = run(unet, x), run(unet, y), run(unet, z)
    torch.testing.assert_close(out_y[1:], out_x[1:], **EXACT)
    assert changed(out_z[0], out_x[0]) and changed(out_z[3], out_x[3])
    torch.testing.assert_close(out_x[2:3], run(unet, x[2:3]), **TIGHT)


def test_sparse_causal_is_causal(unet):
    x = frames(4, 12)
    y = x.clone()
    y[3] = frames(1, 13)[0]
    z = x.clone()
    z[1] = frames(1, 14)[0]
    with cross_frame_attention(unet, "sparse-causal") as xattn:
        xattn.set_groups([4])
        out_x, out_y, out_z = run(unet, x), run(unet, y), run(unet, z)
    with cross_frame_attention(unet, "first") as xattn:
        xattn.set_groups([4])
        out_first = run(unet, x)
    torch.testing.assert_close(out_y[:3], out_x[:3], **EXACT)  # no frame sees a later one
    assert changed(out_z[2], out_x[2])  # frame 2 attends to its previous frame 1
    torch.testing.assert_close(out_x[:2], out_first[:2], **TIGHT)  # frames 0, 1: [0, 0] == first frame
    assert changed(out_x[2], out_first[2])


@pytest.mark.parametrize("mode", GROUP_MODES)
def test_groups_are_independent(unet, mode):
    x = frames(6, 15)
    y = x.clone()
    y[3] = frames(1, 16)[0]  # first frame of group B
    y[5] = frames(1, 17)[0]
    with cross_frame_attention(unet, mode) as xattn:
        xattn.set_groups([3, 3])
        out_x, out_y = run(unet, x), run(unet, y)
        xattn.set_groups([3])
        alone = run(unet, x[:3])
    torch.testing.assert_close(out_y[:3], out_x[:3], **EXACT)
    assert changed(out_y[3:], out_x[3:])
    torch.testing.assert_close(out_x[:3], alone, **TIGHT)


def test_include_self_adds_the_own_frame(unet):
    x = frames(3, 18)
    y = x.clone()
    y[2] = frames(1, 19)[0]
    with cross_frame_attention(unet, "first") as xattn:
        xattn.set_groups([3])
        plain = run(unet, x)
    with cross_frame_attention(unet, "first", include_self=True) as xattn:
        xattn.set_groups([3])
        out_x, out_y = run(unet, x), run(unet, y)
    torch.testing.assert_close(out_y[:2], out_x[:2], **EXACT)
    assert changed(out_x[1], plain[1])
    torch.testing.assert_close(out_x[0], plain[0], **TIGHT)  # [first, self] == [first] for frame 0


# --------------------------------------------------------------------------- global anchor


def test_global_equals_first_with_the_anchor_prepended(unet):
    """Frame f attending to a recorded anchor a == frame 1 of the group [a, f] in `first` mode."""
    a, x = frames(1, 20), frames(3, 21)
    with cross_frame_attention(unet, "global") as xattn:
        with xattn.record_anchor():
            run(unet, a)
        xattn.set_groups([2, 1])
        out = run(unet, x)
    with cross_frame_attention(unet, "first") as xattn:
        pairs = torch.stack([torch.cat([a, x[i : i + 1]]) for i in range(3)]).flatten(0, 1)
        xattn.set_groups([2, 2, 2])
        expected = run(unet, pairs)[1::2]
    torch.testing.assert_close(out, expected, **TIGHT)


def test_global_with_cfg_layout_selects_the_anchor_per_group(unet):
    anchors = frames(2, 22)  # [uncond_anchor, cond_anchor]
    e_uncond, e_cond = text(1, 200), text(1, 201)
    anchor_text = torch.cat([e_uncond, e_cond])
    x = frames(2, 23)
    batch = torch.cat([x, x])  # one group of 2 frames, doubled by CFG
    batch_text = torch.cat([e_uncond.expand(2, -1, -1), e_cond.expand(2, -1, -1)])
    with cross_frame_attention(unet, "global") as xattn:
        with xattn.record_anchor():
            run(unet, anchors, anchor_text)
        xattn.set_groups([2, 2], anchor_index=[0, 1])
        out = run(unet, batch, batch_text)
        xattn.set_groups([2, 2], anchor_index=[1, 1])
        swapped = run(unet, batch, batch_text)
        y = batch.clone()
        y[3] = frames(1, 24)[0]
        xattn.set_groups([2, 2], anchor_index=[0, 1])
        out_y = run(unet, y, batch_text)
    torch.testing.assert_close(out_y[:3], out[:3], **EXACT)  # no frame depends on another frame
    torch.testing.assert_close(swapped[2:], out[2:], **EXACT)
    assert changed(swapped[:2], out[:2])
    with cross_frame_attention(unet, "first") as xattn:  # reference: [anchor, frame] pairs
        for g, (anchor, emb) in enumerate([(anchors[:1], e_uncond), (anchors[1:], e_cond)]):
            pairs = torch.cat([anchor, x[:1], anchor, x[1:]])
            xattn.set_groups([2, 2])
            expected = run(unet, pairs, emb.expand(4, -1, -1))[1::2]
            torch.testing.assert_close(out[2 * g : 2 * g + 2], expected, **TIGHT)


def test_record_anchor_replaces_and_clear_forgets(unet):
    with cross_frame_attention(unet, "global") as xattn:
        xattn.set_groups([2])
        with pytest.raises(RuntimeError, match="no anchor recorded"):
            run(unet, frames(2, 25))
        with xattn.record_anchor():
            run(unet, frames(1, 26))
        first = run(unet, frames(2, 25))
        with xattn.record_anchor():
            run(unet, frames(1, 27))
        assert changed(run(unet, frames(2, 25)), first)
        with xattn.record_anchor():
            with pytest.raises(RuntimeError, match="more than one UNet forward"):
                run(unet, frames(1, 26))
                run(unet, frames(1, 26))
        xattn.clear_anchor()
        with pytest.raises(RuntimeError, match="no anchor recorded"):
            run(unet, frames(2, 25))


# --------------------------------------------------------------------------- errors


def test_unknown_mode_names_the_config_key_and_the_modes():
    with pytest.raises(ValueError, match="codenoise.attention") as info:
        CrossFrameAttention("causal")
    for mode in ATTENTION_MODES:
        assert repr(mode) in str(info.value)


def test_bad_layouts(unet):
    with cross_frame_attention(unet, "first") as xattn:
        with pytest.raises(RuntimeError, match="set_groups"):
            run(unet, frames(2, 28))
        xattn.set_groups([2, 2])
        with pytest.raises(ValueError, match=r"sum to 4 .* batch of 5"):
            run(unet, frames(5, 28))
        with pytest.raises(ValueError, match="positive"):
            xattn.set_groups([2, 0])
        with pytest.raises(ValueError, match="anchor_index has 1 entries for 2 groups"):
            xattn.set_groups([2, 2], anchor_index=[0])
        with pytest.raises(RuntimeError, match="only used by the 'global' mode"):
            with xattn.record_anchor():
                pass
    with cross_frame_attention(unet, "global") as xattn:
        with xattn.record_anchor():
            run(unet, frames(2, 29))
        xattn.set_groups([1, 1])
        with pytest.raises(ValueError, match="2 anchors are recorded"):
            run(unet, frames(2, 28))
        xattn.set_groups([1, 1], anchor_index=[0, 2])
        with pytest.raises(ValueError, match="refers to anchor 2"):
            run(unet, frames(2, 28))


# --------------------------------------------------------------------------- dtype


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_processor_keeps_the_input_dtype(dtype):
    torch.manual_seed(0)
    attn = Attention(query_dim=32, heads=4, dim_head=8).to(dtype)
    x = torch.randn(1, 16, 32, dtype=dtype).expand(3, -1, -1).contiguous()
    controller = CrossFrameAttention("sparse-causal")
    controller.set_groups([3])
    out = CrossFrameAttnProcessor(controller, "attn1.processor")(attn, x)
    assert out.dtype == dtype
    tol = dict(atol=2e-2, rtol=2e-2) if dtype == torch.bfloat16 else TIGHT
    torch.testing.assert_close(out, AttnProcessor2_0()(attn, x), **tol)
