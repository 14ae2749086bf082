"""vnp's two encoders in process on one GPU: eager, compiled and fp8 side by side, with fp8's fidelity.

    python -m scripts.measure_models --frames 20000 --repeats 2 --out models.json

Like `bench_parallel.py` this drives the pipeline's own code (a `Worker`, as `vnp predict` runs it:
tokenising, token-budget batching, host-to-device copies, the model and pooling), because what it
measures is inside one stage. Frames are shaped like real reads' kept frames (150-nt nucleotide records,
49-50-residue proteins); weights are the seeded random weights of the full-size models (speed real, labels
not). Each configuration: a first pass (compiling, where it compiles) timed apart, then ``--repeats``
timed passes over every frame. fp8: the run's own fidelity check on the first 2,048 frames (the verdict a
`vnp predict --precision fp8` would reach), then fp8 timed whatever the verdict, with its agreement
with eager bf16 over all frames. ``--fp8-keep`` adds fp8 configurations with linears or layers kept in
bf16 (``VNP_FP8_KEEP`` syntax). The JSON is rewritten after every step, so a run cut short keeps its steps.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

AMINO = "ACDEFGHIKLMNPQRSTVWY"


def synthetic_frames(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    nucleotides = ["".join(rng.choice(list("ACGT"), size=150)) for _ in range(count)]
    proteins = ["".join(rng.choice(list(AMINO), size=int(rng.integers(49, 51)))) for _ in range(count)]
    return nucleotides, proteins


class Store:
    """The two fields of the frame store the worker reads."""

    def __init__(self, nucleotides: list[str], proteins: list[str]):
        self.fields = {"nucleotides": nucleotides, "proteins": proteins}

    def get(self, field: str, rows) -> list[str]:
        return [self.fields[field][r] for r in rows]


def timed(worker, stage: str, sequences: list[str]):
    """Seconds of the model alone (tokenised beforehand, as the pipeline's reader thread does), tokens, output."""
    tokens = worker._tokenize(stage, sequences)
    worker._sync()
    started = time.perf_counter()
    embeddings = worker._embed(stage, tokens, record=False)
    worker._sync()
    return time.perf_counter() - started, int(tokens[1].sum()), embeddings


def measure(worker, stage: str, sequences: list[str], repeats: int) -> tuple[dict, object]:
    first, tokens, embeddings = timed(worker, stage, sequences)
    runs = [timed(worker, stage, sequences)[0] for _ in range(repeats)]
    torch = worker.torch
    return {"tokens": tokens, "first_pass_seconds": round(first, 3), "seconds": [round(s, 3) for s in runs],
            "tokens_per_second": [round(tokens / s) for s in runs],
            "peak_allocated_bytes": int(torch.cuda.max_memory_allocated(worker.device)) if worker.is_cuda else None,
            }, embeddings


def agreement(reference, candidate) -> dict:
    import torch

    cosine = torch.nn.functional.cosine_similarity(reference.double(), candidate.double(), dim=1)
    return {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
            "share_at_least_0.999": float((cosine >= 0.999).double().mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--model-size", default="full", choices=("tiny", "full"))
    parser.add_argument("--fp8-keep", action="append", default=[], help="extra fp8 configurations (VNP_FP8_KEEP)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import torch

    from vnp.engine.devices import host_info, visible_gpus
    from vnp.engine.worker import Worker, WorkerConfig
    from vnp.models.compiled import compile_encoder
    from vnp.models.fp8 import restore, to_fp8

    result = {"args": {k: str(v) for k, v in vars(args).items()}, "host": host_info(visible_gpus()), "steps": {}}

    def save(name: str, value) -> None:
        result["steps"][name] = value
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"measure_models: {name}: {json.dumps(value)[:300]}", flush=True)

    nucleotides, proteins = synthetic_frames(args.frames)
    worker = Worker(WorkerConfig(workdir="", device=args.device, rank=0, world=1, model_size=args.model_size,
                                 precision="bf16"))
    started = time.perf_counter()
    worker.load_models()
    save("load", {"seconds": round(time.perf_counter() - started, 2), "budget": worker.budget})
    esm = worker.models["esm2"]

    eager = {}
    for stage, sequences in (("dnabert", nucleotides), ("esm2", proteins)):
        save(f"{stage} eager", (step := measure(worker, stage, sequences, args.repeats))[0])
        eager[stage] = step[1]

    for stage in ("dnabert", "esm2"):
        worker.compiled[stage] = compile_encoder(worker.models[stage], worker.budget[stage])
        sequences = nucleotides if stage == "dnabert" else proteins
        try:
            summary, embeddings = measure(worker, stage, sequences, args.repeats)
        except Exception as error:  # no compiler on the host, an Inductor bug: say so, measure the rest
            save(f"{stage} compiled", {"error": f"{type(error).__name__}: {str(error)[:2000]}"})
            worker.models[stage].compiled = None
            continue
        save(f"{stage} compiled", {**summary, "compile": worker.compiled[stage].summary(),
                                   "vs_eager": agreement(eager[stage], embeddings)})

    # fp8 the way `vnp predict --precision fp8` decides it, then timed whatever the verdict
    sample = np.arange(min(args.frames, 2048))
    for keep in [None, *args.fp8_keep]:
        os.environ.pop("VNP_FP8_KEEP", None)
        if keep is not None:
            os.environ["VNP_FP8_KEEP"] = keep
        worker.calibration, worker.precision_used = None, "fp8"
        worker._calibrate(Store(nucleotides, proteins), sample)
        if not worker.calibration.passed:  # timed anyway: the figures say what fp8 would have bought
            worker.fp8_swapped = to_fp8(esm, keep)
        summary, embeddings = measure(worker, "esm2", proteins, args.repeats)
        save(f"esm2 fp8 compiled keep={keep}", {**summary, "calibration": worker.calibration.as_dict(),
                                                "calibration_seconds": round(worker.calibration_seconds, 2),
                                                "vs_eager_bf16": agreement(eager["esm2"], embeddings)})
        restore(worker.fp8_swapped)  # bf16 again for the next configuration
        worker.fp8_swapped = []
    save("done", {"peak_allocated_bytes": int(torch.cuda.max_memory_allocated(worker.device))
                  if worker.is_cuda else None})


if __name__ == "__main__":
    main()
