"""The models of vnp: ESM-2, DNABERT-S and the MLP classifier, their tokenizers and weight loaders."""

from vnp.models.classifier import MLPClassifier
from vnp.models.dnabert import DNABERT, DNABERT_CONFIGS, DNABERTConfig
from vnp.models.esm2 import ESM2, ESM2_CONFIGS, ESM2Config

__all__ = ["DNABERT", "DNABERT_CONFIGS", "DNABERTConfig", "ESM2", "ESM2_CONFIGS", "ESM2Config", "MLPClassifier"]
