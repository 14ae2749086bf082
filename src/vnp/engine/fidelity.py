"""The check that decides whether a run may use fp8: the run's own frames, embedded both ways, compared.

A worker asked for ``--precision fp8`` embeds a calibration sample (``CALIBRATION_FRAMES`` frames spread
evenly over its shard) with ESM-2 in bf16 (eager, the reference) and in fp8, classifies both with the
same DNABERT-S embeddings, and keeps fp8 only if the pooled embeddings and the calls agree within
``Bars`` (the bars the VirNucPro fork used to accept fp16); otherwise it runs in bf16 and says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

CALIBRATION_FRAMES = 2048


def calibration_sample(rows: np.ndarray) -> np.ndarray:
    """At most CALIBRATION_FRAMES of ``rows``, evenly spread: a shard is sorted by length, so its first frames
    would be its longest, not its typical ones; and a --resume checks the same frames again."""
    if len(rows) <= CALIBRATION_FRAMES:
        return rows
    return rows[np.linspace(0, len(rows) - 1, CALIBRATION_FRAMES).round().astype(np.int64)]


@dataclass(frozen=True)
class Bars:
    min_cosine: float = 0.999  # a frame agrees when its pooled ESM-2 embeddings have at least this cosine
    cosine_share: float = 0.99  # ... and at least this share of the frames must agree
    label_agreement: float = 0.998  # share of frames whose call (argmax of the scores) is the same


@dataclass(frozen=True)
class Calibration:
    frames: int
    cosine_min: float | None
    cosine_mean: float | None
    cosine_share: float  # share of frames at or above bars.min_cosine
    label_agreement: float
    score_max_abs_diff: float | None
    bars: Bars
    error: str | None = None  # fp8 could not run at all (no fp8 GEMM on this device or torch)

    @property
    def passed(self) -> bool:
        return (self.error is None and self.cosine_share >= self.bars.cosine_share
                and self.label_agreement >= self.bars.label_agreement)

    def describe(self) -> str:
        if self.error is not None:
            return f"fp8 could not run ({self.error})"
        return (f"on {self.frames:,} frames, {self.cosine_share:.1%} had cosine >= {self.bars.min_cosine} "
                f"(needs {self.bars.cosine_share:.0%}; min {self.cosine_min:.5f}), calls agree on "
                f"{self.label_agreement:.2%} (needs {self.bars.label_agreement:.1%})")

    def as_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}


def compare(reference: np.ndarray, candidate: np.ndarray, reference_scores: np.ndarray,
            candidate_scores: np.ndarray, bars: Bars = Bars()) -> Calibration:
    """Embeddings [n, E] and classifier scores [n, 2] of the same frames, the reference's first."""
    reference, candidate = (np.asarray(a, dtype=np.float64) for a in (reference, candidate))
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    cosine = (reference * candidate).sum(axis=1) / np.maximum(norms, 1e-300)
    cosine = np.where(np.isfinite(cosine), cosine, -1.0)  # a NaN frame disagrees
    labels = np.argmax(reference_scores, axis=1) == np.argmax(candidate_scores, axis=1)
    diff = np.abs(np.asarray(reference_scores, np.float64) - np.asarray(candidate_scores, np.float64))
    return Calibration(frames=len(cosine), cosine_min=float(cosine.min()), cosine_mean=float(cosine.mean()),
                       cosine_share=float((cosine >= bars.min_cosine).mean()),
                       label_agreement=float(labels.mean()),
                       score_max_abs_diff=float(np.nan_to_num(diff, nan=np.inf).max()), bars=bars)


def unusable(error: str, bars: Bars = Bars()) -> Calibration:
    """The record of an fp8 attempt that raised before any comparison."""
    return Calibration(0, None, None, 0.0, 0.0, None, bars, error=error)
