"""Tokenizers: the ESM-2 alphabet, and the DNABERT-S BPE (the real one, or a deterministic stand-in).

Both encoders return the whole batch as one flat int64 array plus int32 lengths, the form packing needs.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from vnp.atomic import atomic_write
from vnp.errors import InputError, WeightsError

# -- ESM-2 -------------------------------------------------------------------------------------
# fair-esm's "ESM-1b" alphabet (33 tokens), in id order.
ESM_ALPHABET = ("<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWC", *"XBUZO", ".", "-",
                "<null_1>", "<mask>")
ESM_CLS, ESM_PAD, ESM_EOS = 0, 1, 2
ESM_MAX_RESIDUES = 1022  # fair-esm extract.py truncation: 1024 tokens with BOS and EOS

_ESM_IDS = np.full(256, -1, dtype=np.int64)  # byte -> token id; -1: not in the alphabet
for _id, _token in enumerate(ESM_ALPHABET):
    if len(_token) == 1:
        _ESM_IDS[ord(_token)] = _id


def esm_encode(proteins: list[str], max_residues: int = ESM_MAX_RESIDUES) -> tuple[np.ndarray, np.ndarray]:
    """Flat int64 tokens (BOS + residues[:max_residues] + EOS per protein) and int32 token counts."""
    kept = [protein[:max_residues] for protein in proteins]
    lengths = np.fromiter((len(p) + 2 for p in kept), dtype=np.int32, count=len(kept))
    text = "".join(kept)
    residues = _ESM_IDS[np.frombuffer(text.encode("utf-8"), dtype=np.uint8)]
    if len(residues) != len(text) or (residues < 0).any():
        _raise_first_unknown(kept)
    ends = np.cumsum(lengths, dtype=np.int64)
    tokens = np.empty(int(ends[-1]) if len(ends) else 0, dtype=np.int64)
    is_residue = np.ones(len(tokens), dtype=bool)
    is_residue[ends - lengths] = False
    is_residue[ends - 1] = False
    tokens[ends - lengths] = ESM_CLS
    tokens[ends - 1] = ESM_EOS
    tokens[is_residue] = residues
    return tokens, lengths


def _raise_first_unknown(proteins: list[str]) -> None:
    for number, protein in enumerate(proteins):
        for char in protein:
            if not (char.isascii() and _ESM_IDS[ord(char)] >= 0):
                raise InputError(f"protein {number + 1}: character {char!r} is not in the ESM-2 alphabet")


# -- DNABERT-S ---------------------------------------------------------------------------------
DNABERT_SPECIALS = ("[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]")  # ids 0..4, as in DNABERT-S
STANDIN_VOCAB = 4096
STANDIN_VERSION = 1  # bump when the recipe below changes, so old caches are not reused


def load_dnabert_tokenizer(directory: str | Path | None) -> Tokenizer:
    """The tokenizer of a DNABERT-S folder (its ``tokenizer.json``), or the stand-in BPE for ``None``."""
    if directory is None:
        return _standin_tokenizer(_cache_dir() / f"dnabert-standin-bpe-v{STANDIN_VERSION}.json")
    path = Path(directory) / "tokenizer.json"
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as error:  # missing, unreadable or not a tokenizers JSON
        reason = "no such file" if not path.exists() else str(error).splitlines()[0]
        raise WeightsError(f"{path}: cannot read the DNABERT-S tokenizer: {reason}") from None
    # Like a transformers call without arguments: no truncation, no padding, [CLS] ... [SEP] added.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    if tokenizer.post_processor is None:
        tokenizer.post_processor = _cls_sep_template(tokenizer)
    return tokenizer


def dnabert_encode(tokenizer: Tokenizer, seqs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Flat int64 ids, [CLS] and [SEP] included, and int32 token counts per sequence."""
    encodings = tokenizer.encode_batch_fast(seqs)  # the same ids without the character offsets: 2-3x faster
    lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int32, count=len(encodings))
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), dtype=np.int64,
                      count=int(lengths.sum()))
    return ids, lengths


def _cache_dir() -> Path:
    return Path(os.environ.get("VNP_CACHE_DIR") or Path.home() / ".cache" / "vnp")


def _cls_sep_template(tokenizer: Tokenizer) -> processors.TemplateProcessing:
    specials = [(token, tokenizer.token_to_id(token)) for token in ("[CLS]", "[SEP]")]
    return processors.TemplateProcessing(single="[CLS] $A [SEP]", special_tokens=specials)


@functools.lru_cache(maxsize=4)
def _standin_tokenizer(cache: Path) -> Tokenizer:
    """Read the cached stand-in, or build it (a few seconds) and cache it."""
    if cache.exists():
        try:
            return Tokenizer.from_file(str(cache))
        except Exception:  # a damaged cache is rebuilt, not trusted
            pass
    tokenizer = build_standin_tokenizer()
    try:
        with atomic_write(cache) as handle:
            handle.write(tokenizer.to_str())
    except OSError:  # a read-only home still gets a working (uncached) tokenizer
        pass
    return tokenizer


def build_standin_tokenizer(seed: int = 0, sequences: int = 3000, length: int = 1000) -> Tokenizer:
    """A BPE with DNABERT-S's vocabulary size and special-token ids, trained on seeded random DNA.

    Deterministic: the same arguments give the same tokenizer. Token counts are close to the real
    tokenizer's (about 64 for 300 bp, 105 for 500 bp, specials included) but the pieces are not.
    """
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    corpus = (bases[rng.integers(0, 4, length)].tobytes().decode() for _ in range(sequences))
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=STANDIN_VOCAB, special_tokens=list(DNABERT_SPECIALS),
                                  initial_alphabet=list("ACGTN"), show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.post_processor = _cls_sep_template(tokenizer)
    return tokenizer
