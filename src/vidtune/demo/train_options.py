"""`vidtune train-demo`'s configuration and command-line options, without importing torch.

`vidtune.cli` builds its parser from these on every start, so this module stays light; the
training itself is `vidtune.demo.train`.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class DemoTrainConfig:
    """Everything that decides the demo model; saved in every checkpoint and in the export."""

    vae_minutes: float = 10.0
    unet_minutes: float = 70.0
    num_frames: int = 10000
    scenes_per_kind: int = 100  # distinct backgrounds per (scene, time) in the training set
    seed: int = 0
    vae_batch: int = 32
    vae_crop: int = 32  # the VAE trains on random crops (it is fully convolutional)
    vae_lr: float = 1e-3
    warm_vae_lr: float = 5e-4  # the VAE's peak rate on a warm start (2e-4 for 8 min left stripes a blur)
    kl_weight: float = 1e-6
    unet_batch: int = 32
    unet_lr: float = 3e-4
    # Peak learning rate of the text encoder's token embeddings: new words start as an average word
    # and must move far (as in textual inversion), which the UNet's rate takes thousands of steps to do.
    embedding_lr: float = 3e-3
    # The epsilon loss weighs the figure's latent pixels this many times the background's (1 = plain), and
    # the VAE's reconstruction its pixels: the figure's identity (stripes, hat, trousers) covers a few
    # percent of a frame.
    figure_weight: float = 4.0
    # ... and the identity details' pixels (stripes, a two-tone top, a hat) this many times more: a hat is
    # one or two latent pixels of 256, and the candidate trained without it drew a named hat in a third of
    # the frames.
    detail_weight: float = 4.0
    snr_gamma: float = 5.0  # Min-SNR-gamma loss weighting (Hang et al. 2023); 0 = plain epsilon MSE
    warmup_steps: int = 100
    prompt_dropout: float = 0.1
    ema_decay: float = 0.999
    checkpoint_minutes: float = 4.0
    export_minutes: float = 10.0  # intermediate exports of the EMA model to out_dir/model
    workers: int = 2
    threads: int = 2
    # A model folder to start from ("" = fresh weights; "shipped" = the package's demo model): its VAE
    # is fine-tuned for vae_minutes at warm_vae_lr (new details such as stripes must survive the
    # autoencoder; its scaling factor is kept; 0 minutes keeps the VAE as it is), its tokenizer and text encoder's embeddings are extended with
    # the grammar's new words, and its UNet, adapter and text encoder are fine-tuned.
    warm_start: str = ""
    # Share of each UNet batch's frames that come as pairs: two frames of one figure (one prompt, one
    # identity) in different poses, trained with the second frame's self-attention keys and values
    # taken from the first (`vidtune.method.attention`'s "first" mode, what stage 4 runs), so that the model's
    # attention learns to carry appearance from frame to frame, as SD's does. 0 = single frames only.
    pair_share: float = 0.5
    # Probability that a training prompt names each identity attribute (else it is left open, and the
    # model must draw a value of its own: the unconditional prior a per-frame model drifts over).
    name_prob: float = 0.7


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The train-demo command-line options (shared with `vidtune.cli`)."""
    ap.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="working folder (dataset, checkpoints, loss_log.csv); the model is written to DIR/model",
    )
    ap.add_argument(
        "--vae-minutes",
        type=float,
        default=DemoTrainConfig.vae_minutes,
        metavar="MIN",
        help="time budget of the VAE phase, minutes (default: %(default)s)",
    )
    ap.add_argument(
        "--unet-minutes",
        type=float,
        default=DemoTrainConfig.unet_minutes,
        metavar="MIN",
        help="time budget of the UNet + adapter + text encoder phase, minutes (default: %(default)s)",
    )
    ap.add_argument(
        "--num-frames",
        type=int,
        default=DemoTrainConfig.num_frames,
        metavar="N",
        help="single frames rendered from the synthetic world for the training set (default: %(default)s)",
    )
    ap.add_argument(
        "--unet-batch",
        type=int,
        default=DemoTrainConfig.unet_batch,
        metavar="N",
        help="frames per UNet training batch (default: %(default)s)",
    )
    _add_loss_arguments(ap)
    _add_run_arguments(ap)


def _add_loss_arguments(ap: argparse.ArgumentParser) -> None:
    """The UNet's learning rates and its loss weights."""
    ap.add_argument(
        "--unet-lr",
        type=float,
        default=DemoTrainConfig.unet_lr,
        metavar="LR",
        help="peak learning rate of the UNet phase (default: %(default)s)",
    )
    ap.add_argument(
        "--figure-weight",
        type=float,
        default=DemoTrainConfig.figure_weight,
        metavar="W",
        help="weight of the figure's latent pixels in the epsilon loss, background = 1 (default: %(default)s)",
    )
    ap.add_argument(
        "--detail-weight",
        type=float,
        default=DemoTrainConfig.detail_weight,
        metavar="W",
        help="extra weight of the identity details' pixels (stripes, hat) over the figure's (default: %(default)s)",
    )
    ap.add_argument(
        "--embedding-lr",
        type=float,
        default=DemoTrainConfig.embedding_lr,
        metavar="LR",
        help="peak learning rate of the text encoder's token embeddings (default: %(default)s)",
    )


def _add_run_arguments(ap: argparse.ArgumentParser) -> None:
    """Where training starts from, what it draws, and what happens to its folder and result."""
    ap.add_argument(
        "--warm-start",
        default=DemoTrainConfig.warm_start,
        metavar="MODEL",
        help="fine-tune this model folder ('shipped': the package's demo model) instead of training from "
        "fresh weights: its VAE is fine-tuned for --vae-minutes at a small rate (0: kept as it is), its "
        "tokenizer and text embeddings are extended with new words (default: none, fresh weights)",
    )
    ap.add_argument(
        "--pair-share",
        type=float,
        default=DemoTrainConfig.pair_share,
        metavar="F",
        help="share of each UNet batch trained as pairs of one figure in two poses, the second frame's "
        "self-attention reading the first's keys and values (default: %(default)s; 0: single frames)",
    )
    ap.add_argument(
        "--name-prob",
        type=float,
        default=DemoTrainConfig.name_prob,
        metavar="P",
        help="probability that a training prompt names each identity attribute (else it is left open for "
        "the model to draw) (default: %(default)s)",
    )
    ap.add_argument(
        "--seed",
        type=int,
        default=DemoTrainConfig.seed,
        metavar="N",
        help="seed of the training set and of the training (default: %(default)s)",
    )
    ap.add_argument(
        "--fresh",
        "--no-resume",
        dest="fresh",
        action="store_true",
        help="start over instead of resuming from the checkpoints in OUT",
    )
    ap.add_argument(
        "--install",
        action="store_true",
        help="copy the final model into vidtune/demo/model, where vidtune demo loads it",
    )
