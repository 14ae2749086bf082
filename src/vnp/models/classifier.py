"""VirNucPro's MLP classifier: [DNABERT-S 768 | ESM-2 2560] features -> P(others), P(virus).

Module and parameter names are the original's (``hidden_layer``, ``bn1``, ``output_layer``), so its
state dict loads unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

HIDDEN = 512
CLASSES = ("others", "virus")  # column 1 of the scores is the virus probability


class MLPClassifier(nn.Module):
    """Linear(in -> 512) -> BatchNorm1d(512) -> ReLU -> Dropout(0.5) -> Linear(512 -> 2)."""

    def __init__(self, in_features: int = 3328, *, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.hidden_layer = nn.Linear(in_features, HIDDEN, **factory)
        self.bn1 = nn.BatchNorm1d(HIDDEN, **factory)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.5)
        self.output_layer = nn.Linear(HIDDEN, len(CLASSES), **factory)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output_layer(self.dropout(self.relu(self.bn1(self.hidden_layer(x)))))

    @torch.inference_mode()
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities [N, 2] in float32; switches to eval mode (running BatchNorm statistics)."""
        self.eval()
        return torch.softmax(self(x.to(self.hidden_layer.weight.dtype)).float(), dim=1)
