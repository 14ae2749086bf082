"""`vnp embed`: per-record embeddings for users who want features rather than calls.

Writes a safetensors file with ``embeddings`` (float32 [N, E], input order) and ``ids`` (the record
IDs as newline-joined ASCII bytes, a uint8 tensor: safetensors holds tensors only, and a header of
millions of IDs would exceed its metadata limit).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from vnp.atomic import atomic_write
from vnp.engine.devices import resolve_devices, resolve_precision
from vnp.engine.worker import MODEL_CONFIGS, Worker, WorkerConfig
from vnp.errors import InputError, utf8_text


def read_records(path: str) -> tuple[list[str], list[str]]:
    """IDs and upper-cased sequences of any FASTA (proteins included, so no nucleotide check)."""
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    if not Path(path).is_file():
        raise InputError(f"input file {path} does not exist")
    ids, sequences = [], []
    number_of: dict[str, int] = {}  # the rows are found by ID, so each must name one record
    with open(path, encoding="utf-8") as handle, utf8_text(path):
        for number, (title, sequence) in enumerate(SimpleFastaParser(handle), start=1):
            words = title.split(None, 1)
            if not words:
                raise InputError(f"{path}: record #{number} has no ID (empty header line)")
            if words[0] in number_of:
                raise InputError(f"{path}: duplicate record ID '{words[0]}' "
                                 f"(records #{number_of[words[0]]} and #{number})")
            if not sequence:
                raise InputError(f"{path}: record '{words[0]}' (#{number}) has an empty sequence")
            number_of[words[0]] = number
            ids.append(words[0])
            sequences.append(sequence.upper())
    if not ids:
        raise InputError(f"{path}: no FASTA records")
    return ids, sequences


def run(args) -> int:
    import torch
    from safetensors.torch import save

    from vnp.models.weights import load_dnabert, load_esm2

    ids, sequences = read_records(args.input)
    devices, gpus = resolve_devices(None, args.cpu)
    precision = resolve_precision(args.precision, gpus)  # refuses fp16/bf16 without a GPU
    config = WorkerConfig(workdir="", device=devices[0], rank=0, world=1,
                          model_size=args.model_size, precision=precision, compile=args.compile,
                          token_budget={args.model: args.token_budget} if args.token_budget else {})
    worker = Worker(config)
    esm_config, dnabert_config = MODEL_CONFIGS[args.model_size]
    if args.model == "esm2":
        # a file says which ESM-2 it is (any published size, or a custom one); --model-size names the random one
        named = None if args.weights else esm_config
        loaded = load_esm2(args.weights, named, worker.device, worker.dtype, trust_pickle=args.trust_pickle)
        worker.attach("esm2", loaded.model)
    else:
        loaded, tokenizer = load_dnabert(args.weights, dnabert_config, worker.device, worker.dtype)
        worker.attach("dnabert", loaded.model, tokenizer)
    if loaded.synthetic:
        print("vnp: no weights given: embeddings come from seeded random weights", file=sys.stderr)
    embeddings = worker.embed(args.model, sequences)[0].cpu()
    packed_ids = np.frombuffer("\n".join(ids).encode(), dtype=np.uint8).copy()
    with atomic_write(args.output, "wb") as handle:
        handle.write(save({"embeddings": embeddings.contiguous(), "ids": torch.from_numpy(packed_ids)},
                          metadata={"model": args.model, "model_size": args.model_size,
                                    "synthetic_weights": str(loaded.synthetic).lower()}))
    print(f"vnp: wrote {len(ids)} embeddings of size {embeddings.shape[1]} to {args.output}", file=sys.stderr)
    return 0
