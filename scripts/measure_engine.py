#!/usr/bin/env python
"""Measure the engine's model stages on one device: load time, throughput per switch, precision fidelity.

Throughput goes through the same code path as `vnp predict` (Worker.embed: tokenise, budget batching,
host->device copies, the model, pooling), on frames shaped like real reads' kept frames: proteins of
49-50 residues (51-52 ESM tokens) and their 148-151-nt nucleotide records. Each configuration is
timed `--repeats` times after a warm-up pass; the JSON keeps every repeat so the spread is visible.

  python scripts/measure_engine.py --out engine.json            # on a GPU: full-size models
  python scripts/measure_engine.py --model-size tiny --quick    # a dry run on the CPU
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time

import numpy as np

AMINO_ACIDS = np.array(list("LAGVSERTIDPKQNFYMHWC"))
BASES = np.array(list("ACGT"))


def synthetic_frames(count: int, seed: int = 0) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(49, 51, size=count, endpoint=True)
    proteins = ["".join(rng.choice(AMINO_ACIDS, size=n)) for n in lengths]
    nucleotides = ["".join(rng.choice(BASES, size=3 * n + 1)) for n in lengths]
    return proteins, nucleotides


def make_worker(device: str, precision: str, attention: str, packing: bool, budget: int | None):
    from vnp.engine.worker import Worker, WorkerConfig

    budget_map = {"esm2": budget, "dnabert": budget} if budget else {}
    return Worker(WorkerConfig(workdir="", device=device, rank=0, world=1,
                               precision=precision, attention=attention, packing=packing, token_budget=budget_map))


def load(stage: str, model_size: str, worker):
    from vnp.engine.worker import MODEL_CONFIGS
    from vnp.models.weights import load_dnabert, load_esm2

    esm_name, dnabert_name = MODEL_CONFIGS[model_size]
    t0 = time.perf_counter()
    if stage == "esm2":
        model, tokenizer = load_esm2(None, esm_name, worker.device, worker.dtype).model, None
    else:
        loaded, tokenizer = load_dnabert(None, dnabert_name, worker.device, worker.dtype)
        model = loaded.model
    worker._sync()
    return model, tokenizer, time.perf_counter() - t0


def throughput(args, stage, precision, attention, packing, budget, sequences, models, sdpa=None):
    import os

    os.environ.pop(f"VNP_SDPA_{stage.upper()}", None)
    if sdpa:
        os.environ[f"VNP_SDPA_{stage.upper()}"] = sdpa
    worker = make_worker(args.device, precision, attention, packing, budget)
    key = (stage, precision)
    if key not in models:
        models.clear()  # one full-size model on the card at a time
        if worker.is_cuda:
            worker.torch.cuda.empty_cache()
        models[key] = load(stage, args.model_size, worker)
    model, tokenizer, load_seconds = models[key]
    worker.attach(stage, model, tokenizer)
    worker.embed(stage, sequences[: max(1, len(sequences) // 8)])  # warm-up: kernels, allocator, caches
    seconds = []
    for _ in range(args.repeats):
        worker.stages[stage] = type(worker.stages[stage])()
        if worker.is_cuda:
            worker.torch.cuda.reset_peak_memory_stats(worker.device)
        worker._sync()
        t0 = time.perf_counter()
        worker.embed(stage, sequences)
        worker._sync()
        seconds.append(time.perf_counter() - t0)
    stats = worker.stages[stage]
    peak = int(worker.torch.cuda.max_memory_allocated(worker.device)) if worker.is_cuda else 0
    rates = [stats.tokens / s for s in seconds]
    return {"stage": stage, "precision": precision, "attention": attention, "packing": packing, "sdpa": sdpa,
            "token_budget": worker.budget[stage], "sequences": len(sequences), "tokens": stats.tokens,
            "padding_tokens": stats.padding_tokens, "batches": stats.batches, "seconds": seconds,
            "tokens_per_second_median": statistics.median(rates), "tokens_per_second_min": min(rates),
            "tokens_per_second_max": max(rates), "peak_allocated_bytes": peak, "model_load_seconds": load_seconds}


def cast_parameters(model, dtype):
    """A copy with its parameters in ``dtype``; buffers (rotary inv_freq) stay float32, as the loaders keep them."""
    clone = copy.deepcopy(model)
    for parameter in clone.parameters():
        parameter.data = parameter.data.to(dtype)
    return clone


def fidelity(args, proteins, nucleotides):
    """Pooled embeddings and classifier scores in fp16/bf16 against fp32, same weights, same frames."""
    import torch

    from vnp.engine.worker import MODEL_CONFIGS
    from vnp.models.weights import load_classifier, load_dnabert, load_esm2

    esm_name, dnabert_name = MODEL_CONFIGS[args.model_size]
    device = torch.device(args.device)
    reference = make_worker(args.device, "fp32", "math", True, None)
    esm = load_esm2(None, esm_name, device, torch.float32).model
    dnabert, tokenizer = load_dnabert(None, dnabert_name, device, torch.float32)
    classifier = load_classifier(None, dnabert.model.config.hidden_size + esm.config.embed_dim, device).model
    reference.attach("esm2", esm)
    reference.attach("dnabert", dnabert.model, tokenizer)
    with torch.inference_mode():
        ref_esm = reference.embed("esm2", proteins)[0]
        ref_dna = reference.embed("dnabert", nucleotides)[0]
        ref_scores = classifier.scores(torch.cat([ref_dna, ref_esm], 1))
    results = []
    for precision in args.low_precisions:
        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[precision]
        worker = make_worker(args.device, precision, "sdpa", True, None)
        worker.attach("esm2", cast_parameters(esm, dtype))  # rounded copies; the fp32 originals stay
        worker.attach("dnabert", cast_parameters(dnabert.model, dtype), tokenizer)
        with torch.inference_mode():
            low_esm = worker.embed("esm2", proteins)
            low_dna = worker.embed("dnabert", nucleotides)
            scores = classifier.scores(torch.cat([low_dna, low_esm], 1))
        entry = {"precision": precision, "frames": len(proteins)}
        for name, low, ref in (("esm2", low_esm, ref_esm), ("dnabert", low_dna, ref_dna)):
            cosine = torch.nn.functional.cosine_similarity(low, ref, dim=1)
            entry[f"{name}_cosine_min"] = float(cosine.min())
            entry[f"{name}_cosine_mean"] = float(cosine.mean())
        entry["scores_max_abs_diff"] = float((scores - ref_scores).abs().max())
        entry["labels_changed"] = int((scores.argmax(1) != ref_scores.argmax(1)).sum())
        results.append(entry)
        del worker
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="default: cuda:0 when available, else cpu")
    parser.add_argument("--model-size", choices=("tiny", "full"), default=None,
                        help="default: full on a GPU, tiny on the CPU")
    parser.add_argument("--frames", type=int, default=20000, help="frames per throughput measurement")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fidelity-frames", type=int, default=2048)
    parser.add_argument("--low-precisions", nargs="*", default=["bf16", "fp16"])
    parser.add_argument("--grid", default="default", choices=("default", "budgets", "kernels", "none"))
    parser.add_argument("--quick", action="store_true", help="few frames, one repeat (a smoke test)")
    parser.add_argument("--out", help="write the JSON here as well as to stdout")
    args = parser.parse_args()

    import torch

    args.device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    args.model_size = args.model_size or ("full" if args.device.startswith("cuda") else "tiny")
    if args.quick:
        args.frames, args.repeats, args.fidelity_frames = 256, 1, 64
    if not args.device.startswith("cuda"):
        args.low_precisions = []
    gpu = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else "cpu"
    report = {"device": args.device, "gpu": gpu, "torch": torch.__version__, "model_size": args.model_size,
              "frames": args.frames, "repeats": args.repeats, "throughput": [], "fidelity": []}
    proteins, nucleotides = synthetic_frames(args.frames)
    cpu = not args.device.startswith("cuda")
    fast = "fp32" if cpu else "bf16"
    grid = {
        "default": [
            ("esm2", fast, "sdpa", True, None), ("esm2", fast, "varlen", True, None),
            ("esm2", fast, "math", True, None), ("esm2", fast, "sdpa", False, None),
            ("esm2", "fp16", "sdpa", True, None), ("esm2", "fp32", "sdpa", True, None),
            ("dnabert", fast, "sdpa", True, None), ("dnabert", fast, "math", True, None),
            ("dnabert", "fp16", "sdpa", True, None), ("dnabert", "fp32", "sdpa", True, None),
        ],
        "budgets": [("esm2", fast, "sdpa", True, b) for b in (8192, 16384, 32768, 65536, 131072)]
                   + [("dnabert", fast, "sdpa", True, b) for b in (16384, 65536, 262144)],
        "kernels": [("esm2", fast, "sdpa", True, None, "CUDNN_ATTENTION"),
                    ("esm2", fast, "sdpa", True, None, "FLASH_ATTENTION"),
                    ("esm2", fast, "sdpa", True, None, "EFFICIENT_ATTENTION"),
                    ("esm2", fast, "varlen", True, None),
                    ("esm2", fast, "sdpa", True, 131072, "FLASH_ATTENTION"),
                    ("dnabert", fast, "sdpa", True, None, "CUDNN_ATTENTION"),
                    ("dnabert", fast, "sdpa", True, None, "EFFICIENT_ATTENTION"),
                    ("dnabert", fast, "math", True, None),
                    ("dnabert", fast, "sdpa", True, 262144, "EFFICIENT_ATTENTION"),
                    ("dnabert", fast, "math", True, 262144)],
        "none": [],
    }[args.grid]
    if cpu:
        grid = [g for g in grid if g[1] == "fp32" and g[2] != "varlen" and len(g) == 5]
    grid.sort(key=lambda g: (g[0], g[1]))  # reuse each loaded model for all its measurements
    models: dict = {}
    for stage, precision, attention, packing, budget, *sdpa in grid:
        sequences = proteins if stage == "esm2" else nucleotides
        try:
            result = throughput(args, stage, precision, attention, packing, budget, sequences, models, *sdpa)
        except Exception as error:  # record and carry on: one failing switch must not cost the whole run
            result = {"stage": stage, "precision": precision, "attention": attention, "packing": packing,
                      "error": f"{type(error).__name__}: {error}"}
        report["throughput"].append(result)
        print(json.dumps({k: v for k, v in result.items() if k != "seconds"}), file=sys.stderr, flush=True)
    models.clear()
    if args.low_precisions:
        report["fidelity"] = fidelity(args, proteins[: args.fidelity_frames], nucleotides[: args.fidelity_frames])
    text = json.dumps(report, indent=1)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
