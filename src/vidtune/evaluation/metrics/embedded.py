"""The metrics that need model weights: CLIP frame and text consistency, DINO subject consistency."""

from __future__ import annotations

from typing import Any

import numpy as np

from vidtune.evaluation.metrics.frames import (
    NAN,
)
from vidtune.evaluation.metrics.pixel import (
    Metric,
)
from vidtune.evaluation.metrics.streaming import (
    Step,
    _Means,
    bucket_of_frame,
    bucket_of_pair,
)

# ------------------------------------------------------------------------------------------
# Metrics with local weights (CLIP, DINO)
# ------------------------------------------------------------------------------------------


def _local_model_dir(path: str, what: str) -> str:
    """The folder of a metric's model on disk (`models.local_folder`: a folder or a cached hub id)."""
    from vidtune.errors import VidtuneError
    from vidtune.models import local_folder

    folder = local_folder(path, "config.json")
    if folder is None or not (folder / "config.json").is_file():
        raise VidtuneError(f"{path}: no config.json; give a local {what} model folder (weights are never downloaded)")
    return str(folder)


def load_clip(path: str, with_text: bool = True) -> tuple[Any, Any, Any]:
    """(CLIPModel, image processor, tokenizer or None) from a local folder, offline, eval mode."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    path = _local_model_dir(path, "CLIP")
    model = CLIPModel.from_pretrained(path, local_files_only=True).eval()
    images = AutoImageProcessor.from_pretrained(path, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True) if with_text else None
    return model, images, tokenizer


def load_dino(path: str) -> tuple[Any, Any]:
    """(ViT model, image processor) from a local folder, offline, eval mode."""
    from transformers import AutoImageProcessor, AutoModel

    path = _local_model_dir(path, "DINO")
    model = AutoModel.from_pretrained(path, local_files_only=True).eval()
    return model, AutoImageProcessor.from_pretrained(path, local_files_only=True)


def _features(output: Any) -> Any:
    """transformers 5 returns a ModelOutput whose ``pooler_output`` is the projected feature."""
    import torch

    return output if isinstance(output, torch.Tensor) else output.pooler_output


class _Embedded(Metric):
    """Base for metrics on per-frame embeddings: frames are embedded in small batches."""

    def __init__(self, bucket: int = 16, batch_size: int = 8) -> None:
        self.batch_size = batch_size
        super().__init__(bucket)

    def reset(self) -> None:
        super().reset()
        self.pending: list[tuple[int, np.ndarray]] = []

    def update(self, step: Step) -> None:
        super().update(step)
        self.pending.append((step.index, step.frame))
        if len(self.pending) >= self.batch_size:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        import torch

        indices, frames = zip(*self.pending)
        self.pending = []
        with torch.no_grad():
            emb = self._embed(list(frames)).float()
        emb = torch.nn.functional.normalize(emb, dim=-1).cpu().numpy().astype(np.float64)
        for i, e in zip(indices, emb):
            self._consume(i, e)

    def _embed(self, frames: list[np.ndarray]) -> Any:
        raise NotImplementedError

    def _consume(self, index: int, emb: np.ndarray) -> None:
        raise NotImplementedError

    def result(self) -> dict[str, float]:
        self._flush()
        return super().result()

    def bucket_results(self) -> list[dict[str, float]]:
        self._flush()
        return super().bucket_results()


class ClipScores(_Embedded):
    """Tune-A-Video's CLIP metrics (x100, as Tune-A-Video reports them).

    With ``e_i`` the L2-normalised CLIP image embedding of frame i and ``c`` the prompt's text
    embedding: ``consistency = 100 * mean_i cos(e_i, e_{i+1})`` over consecutive pairs (our
    choice: it measures frame-to-frame flicker and streams; Tune-A-Video's paper says "all pairs
    of video frames"), ``consistency_all_pairs = 100 * mean_{i<j} cos(e_i, e_j)`` (computed from
    the running sum ``s``: ``(|s|^2 - N) / (N (N - 1))``), and, with a prompt,
    ``text_alignment = 100 * mean_i cos(e_i, c)`` (CLIP score, not clamped). Range [-100, 100].
    """

    name = "clip"

    def __init__(self, model_path: str, prompt: str | None = None, bucket: int = 16, batch_size: int = 8) -> None:
        self.model, self.images, self.tokenizer = load_clip(model_path, with_text=prompt is not None)
        self.prompt = prompt
        self.text_emb: np.ndarray | None = None
        if prompt is not None:
            import torch

            tokens = self.tokenizer([prompt], padding=True, truncation=True, return_tensors="pt")
            with torch.no_grad():
                text = _features(self.model.get_text_features(**tokens)).float()
            self.text_emb = torch.nn.functional.normalize(text, dim=-1)[0].numpy().astype(np.float64)
        super().__init__(bucket, batch_size)

    def reset(self) -> None:
        super().reset()
        self.means = _Means()
        self.prev: np.ndarray | None = None
        self.sums: dict[int | None, tuple[np.ndarray, int]] = {}

    def _embed(self, frames: list[np.ndarray]) -> Any:
        pixels = self.images(images=frames, return_tensors="pt")["pixel_values"]
        return _features(self.model.get_image_features(pixel_values=pixels))

    def _consume(self, index: int, emb: np.ndarray) -> None:
        b = bucket_of_frame(index, self.bucket)
        if self.prev is not None:
            self.means.add(bucket_of_pair(index - 1, self.bucket), "consistency", 100.0 * float(emb @ self.prev))
        self.prev = emb
        if self.text_emb is not None:
            self.means.add(b, "text_alignment", 100.0 * float(emb @ self.text_emb))
        for key in (None, b):
            s, n = self.sums.get(key, (np.zeros_like(emb), 0))
            self.sums[key] = (s + emb, n + 1)

    def _values(self, bucket: int | None) -> dict[str, float]:
        s, n = self.sums.get(bucket, (None, 0))
        all_pairs = 100.0 * (float(s @ s) - n) / (n * (n - 1)) if n >= 2 else NAN
        out = {"consistency": self.means.get("consistency", bucket), "consistency_all_pairs": all_pairs}
        if self.text_emb is not None:
            out["text_alignment"] = self.means.get("text_alignment", bucket)
        return out


class DinoSubjectConsistency(_Embedded):
    """VBench subject consistency with DINO ViT CLS features (``last_hidden_state[:, 0]``,
    after the final layer norm, as DINO's own ``forward``), L2-normalised:
    ``score = mean_{i>=1} (max(0, cos(d_i, d_{i-1})) + max(0, cos(d_i, d_0))) / 2``.
    Range [0, 1], 1 = the subject never changes.
    """

    name = "dino_subject_consistency"

    def __init__(self, model_path: str, bucket: int = 16, batch_size: int = 8) -> None:
        self.model, self.images = load_dino(model_path)
        super().__init__(bucket, batch_size)

    def reset(self) -> None:
        super().reset()
        self.means = _Means()
        self.first: np.ndarray | None = None
        self.prev: np.ndarray | None = None

    def _embed(self, frames: list[np.ndarray]) -> Any:
        pixels = self.images(images=frames, return_tensors="pt")["pixel_values"]
        return self.model(pixel_values=pixels).last_hidden_state[:, 0]

    def _consume(self, index: int, emb: np.ndarray) -> None:
        if self.first is None:
            self.first = emb
        else:
            sim = (max(0.0, float(emb @ self.prev)) + max(0.0, float(emb @ self.first))) / 2
            self.means.add(bucket_of_frame(index, self.bucket), "score", sim)
        self.prev = emb

    def _values(self, bucket: int | None) -> dict[str, float]:
        return {"score": self.means.get("score", bucket)}
