"""The demo model's components: built fresh at 64x64, or warm-started from the shipped model with the
grammar's new words added to its tokenizer and text encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from vidtune.atomic import atomic_dir
from vidtune.demo.synthetic.grammar import VOCABULARY_TEXTS
from vidtune.tokenizer import write_clip_tokenizer

if TYPE_CHECKING:
    pass


RESOLUTION = 64
VAE_FACTOR = 4  # 64x64 frames <-> 16x16 latents


# --------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------


def build_components(vocab_size: int, bos_id: int, eos_id: int, seed: int = 0) -> dict[str, torch.nn.Module]:
    """Fresh demo components: vae (f=4), unet (64/128/128), adapter (full), text_encoder (2 layers)."""
    from diffusers import AutoencoderKL, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    # Fully convolutional (no mid-block attention), so it trains on crops and runs at any size.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=RESOLUTION,
        mid_block_add_attention=False,
    )
    with torch.no_grad():  # start with a small posterior std (exp(-3)): a noisy posterior blurs colours early on
        vae.encoder.conv_out.bias[vae.config.latent_channels :] = -6.0
    unet = UNet2DConditionModel(
        sample_size=RESOLUTION // VAE_FACTOR,
        in_channels=4,
        out_channels=4,
        block_out_channels=(64, 128, 128),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        cross_attention_dim=128,
        attention_head_dim=4,
        norm_num_groups=32,
    )
    adapter = T2IAdapter(
        in_channels=3, channels=[64, 128, 128], num_res_blocks=2, downscale_factor=4, adapter_type="full_adapter"
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=eos_id,
        )
    )
    return {"vae": vae, "unet": unet, "adapter": adapter, "text_encoder": text_encoder}


def shipped_model_path() -> Path:
    """The package's demo model folder (what ``--warm-start shipped`` names)."""
    return Path(__file__).parent / "model"


def extend_text_encoder(text_encoder: torch.nn.Module, old_vocab: dict[str, int], new_vocab: dict[str, int]) -> int:
    """Resize ``text_encoder``'s token embedding from ``old_vocab`` to ``new_vocab`` (token -> id), in
    place: a token both know keeps its trained row (under its new id), a new token starts at the mean
    of the old rows plus a little noise (so new words start as an average word, not as noise the
    encoder never saw). The special-token ids in the config follow the new vocabulary. Returns the
    number of new tokens."""
    from vidtune.tokenizer import SPECIAL_TOKENS

    old = text_encoder.get_input_embeddings().weight.detach().clone()
    gen = torch.Generator().manual_seed(len(new_vocab))
    rows = old.mean(0, keepdim=True) + 0.1 * old.std(0, keepdim=True) * torch.randn(
        (len(new_vocab), old.shape[1]), generator=gen
    )
    fresh = 0
    for token, i in new_vocab.items():
        if token in old_vocab:
            rows[i] = old[old_vocab[token]]
        else:
            fresh += 1
    emb = torch.nn.Embedding(len(new_vocab), old.shape[1])
    emb.weight.data.copy_(rows)
    text_encoder.set_input_embeddings(emb)
    bos, eos = (new_vocab[t] for t in SPECIAL_TOKENS)
    text_encoder.config.vocab_size = len(new_vocab)
    text_encoder.config.bos_token_id, text_encoder.config.eos_token_id = bos, eos
    text_encoder.config.pad_token_id = eos
    for module in text_encoder.modules():  # older transformers keep a copy in CLIPTextTransformer
        if module is not text_encoder and getattr(module, "eos_token_id", None) is not None:
            module.eos_token_id = eos
    return fresh


def warm_start_components(model_dir: Path, tokenizer_dir: Path) -> dict[str, torch.nn.Module]:
    """The components of an existing demo-model folder, fp32, for fine-tuning: its text encoder's
    embedding extended to the tokenizer in ``tokenizer_dir`` (`extend_text_encoder`)."""
    from diffusers import AutoencoderKL, T2IAdapter, UNet2DConditionModel
    from transformers import CLIPTextModel

    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", torch_dtype=torch.float32)
    adapter = T2IAdapter.from_pretrained(model_dir, subfolder="adapter", torch_dtype=torch.float32)
    text_encoder = CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder", torch_dtype=torch.float32)
    old_vocab = json.loads((model_dir / "tokenizer" / "vocab.json").read_text())
    new_vocab = json.loads((tokenizer_dir / "vocab.json").read_text())
    extend_text_encoder(text_encoder, old_vocab, new_vocab)
    return {"vae": vae, "unet": unet, "adapter": adapter, "text_encoder": text_encoder}


def _make_tokenizer(out_dir: Path):
    from transformers import CLIPTokenizer

    tok_dir = out_dir / "tokenizer"
    if not (tok_dir / "vocab.json").exists():
        with atomic_dir(tok_dir) as tmp:
            write_clip_tokenizer(tmp, [*VOCABULARY_TEXTS, ""])
    return CLIPTokenizer.from_pretrained(tok_dir)
