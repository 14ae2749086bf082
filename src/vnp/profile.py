"""`vnp profile`: one packed batch through one model under torch's profiler, and the same GEMMs alone.

The bottleneck analysis as numbers. The model gets seeded random weights (``vnp predict``'s synthetic ones); the
batch is shaped like the pipeline's: frames of the given lengths, drawn seeded, sorted longest first as the
worker sorts them, as many as the token count holds. It runs once to warm up (and to compile, for the fused
kernels), ``repeats`` times on the clock, and once under torch.profiler: the kernels' device time on a GPU, the
operators' own CPU time on the CPU. Then the model's linears alone, in layer order on inputs of the same shapes:
the GEMM-only ceiling, measured in the same process. Inference runs as the worker runs it (inference mode,
the same SDPA backends, ``--kernels`` through ``models/fused.py``).

The JSON (``vnp-profile/1``, docs/run-record.md) lists every kernel by name with its calls and seconds; naming
kernels into categories is left to the reader (the benchmark harness has its own rules).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass

import numpy as np

from vnp.atomic import atomic_write
from vnp.errors import VnpError

SCHEMA = "vnp-profile/1"
# Token lengths of the pipeline's frames: 49-50-residue proteins (+ BOS, EOS); ~34 DNABERT-S tokens for a
# 150-nt record, spread over ~25 BPE lengths (docs/performance.md).
FRAME_LENGTHS = {"esm2": (51, 52), "dnabert": (22, 46)}


@dataclass
class Batch:
    tokens: object  # torch int64 [T] on the device
    cu_seqlens: object  # torch int64 [B + 1] on the CPU (the worker keeps it there)
    max_seqlen: int
    lengths: np.ndarray

    @property
    def num_tokens(self) -> int:
        return int(self.lengths.sum())


def frame_lengths(text: str) -> tuple[int, int]:
    """``51-52`` (or ``51``) -> (51, 52)."""
    low, _, high = text.partition("-")
    try:
        bounds = (int(low), int(high or low))
    except ValueError:
        raise VnpError(f"--frame-lengths {text}: expected MIN-MAX, e.g. 51-52") from None
    if not 3 <= bounds[0] <= bounds[1]:
        raise VnpError(f"--frame-lengths {text}: need 3 <= MIN <= MAX (a frame has its two end tokens)")
    return bounds


def build_model(model: str, model_size: str, device, dtype, seed: int = 0):
    """``model`` with the seeded random weights ``vnp predict`` gives it at ``model_size`` (no tokenizer)."""
    from vnp.engine.worker import MODEL_CONFIGS
    from vnp.models import DNABERT, ESM2
    from vnp.models.weights import dnabert_config, esm2_config, random_init_

    esm_config, dnabert_config_name = MODEL_CONFIGS[model_size]
    if model == "esm2":
        built = ESM2(esm2_config(esm_config), device=device, dtype=dtype)
    else:
        built = DNABERT(dnabert_config(dnabert_config_name), device=device, dtype=dtype)
    return random_init_(built, seed).eval().requires_grad_(False)


def make_batch(vocab_size: int, tokens: int, lengths: tuple[int, int], device, seed: int = 0) -> Batch:
    """Frames of seeded lengths in ``lengths`` (inclusive), longest first, up to ``tokens`` tokens."""
    import torch

    rng = np.random.default_rng(seed)
    drawn = rng.integers(lengths[0], lengths[1] + 1, size=tokens // lengths[0] + 1)
    drawn = drawn[: max(1, int(np.searchsorted(np.cumsum(drawn), tokens, side="right")))]
    drawn = np.sort(drawn)[::-1].astype(np.int64)
    ids = torch.from_numpy(rng.integers(4, vocab_size, size=int(drawn.sum())))
    cu = torch.from_numpy(np.concatenate([[0], np.cumsum(drawn)]))
    return Batch(ids.to(device), cu, int(drawn[0]), drawn)


def gemm_only(model, num_tokens: int):
    """A function running ``model``'s linears, in layer order, on random inputs of ``num_tokens`` rows."""
    import torch
    import torch.nn.functional as F

    from vnp.models.fp8 import Fp8Linear, quantize_rows

    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    inputs, quantized, calls = {}, {}, []  # one input per width, shared by every layer
    for layer in model.layers:
        for module in layer.modules():
            if not isinstance(module, (torch.nn.Linear, Fp8Linear)):
                continue
            width = module.weight.shape[1]
            if width not in inputs:
                inputs[width] = torch.randn(num_tokens, width, device=device, dtype=dtype)
            if isinstance(module, Fp8Linear):  # the fp8 GEMM alone: its input quantised beforehand
                if width not in quantized:
                    quantized[width] = quantize_rows(inputs[width])
                q, scale = quantized[width]
                calls.append(lambda m=module, q=q, s=scale: torch._scaled_mm(
                    q, m.weight.t(), scale_a=s, scale_b=m.weight_scale, bias=m.bias, out_dtype=dtype))
            else:
                calls.append(lambda m=module, x=inputs[width]: F.linear(x, m.weight, m.bias))

    def run():
        for call in calls:
            call()

    return run


def measure(model, stage: str, batch: Batch, repeats: int, profile: bool = True) -> tuple[dict, object]:
    """Timings, the profiled kernels and the GEMM-only ceiling of ``batch`` through ``model``; and its embeddings."""
    import torch

    from vnp.engine.worker import sdpa_backends

    device = batch.tokens.device
    is_cuda = device.type == "cuda"

    def synchronize():
        if is_cuda:
            torch.cuda.synchronize(device)

    def clock(function):
        synchronize()
        started = time.perf_counter()
        output = function()
        synchronize()
        return time.perf_counter() - started, output

    def forward():
        return model.embed_packed(batch.tokens, batch.cu_seqlens, batch.max_seqlen)

    if is_cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode(), sdpa_backends(stage):
        warm_up, embeddings = clock(forward)
        seconds = []
        for _ in range(repeats):
            elapsed, embeddings = clock(forward)
            seconds.append(elapsed)
        peak = int(torch.cuda.max_memory_allocated(device)) if is_cuda else None  # the model's, not the ceiling's
        kernels = _profiled_kernels(forward, is_cuda, synchronize) if profile else None
        ceiling = gemm_only(model, batch.num_tokens)
        ceiling()
        gemm_seconds = [clock(ceiling)[0] for _ in range(repeats)]
    forward_s, gemm_s = statistics.median(seconds), statistics.median(gemm_seconds)
    result = {
        "tokens": batch.num_tokens, "sequences": len(batch.lengths),
        "frame_lengths": [int(batch.lengths.min()), int(batch.lengths.max())],
        "distinct_lengths": len(np.unique(batch.lengths)),
        "warm_up_seconds": round(warm_up, 4), "seconds": [round(s, 5) for s in seconds],
        "tokens_per_second": batch.num_tokens / forward_s,
        "gemm_only_seconds": [round(s, 5) for s in gemm_seconds],
        "gemm_only_tokens_per_second": batch.num_tokens / gemm_s,
        "fraction_of_gemm_ceiling": gemm_s / forward_s,
        "peak_allocated_bytes": peak,
        "profile": kernels,
    }
    return result, embeddings


def _profiled_kernels(forward, is_cuda: bool, synchronize) -> dict:
    """Every kernel (GPU) or operator (CPU, its own time) of one forward pass: name, calls, seconds."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activity = ProfilerActivity.CUDA if is_cuda else ProfilerActivity.CPU
    synchronize()
    with profile(activities=[activity]) as profiler:
        forward()
        synchronize()
    totals: dict[str, list] = {}
    for event in profiler.events():
        on_device = event.device_type != DeviceType.CPU
        if on_device != is_cuda:
            continue
        microseconds = event.time_range.elapsed_us() if on_device else event.self_cpu_time_total
        entry = totals.setdefault(event.name, [0, 0.0])
        entry[0] += 1
        entry[1] += microseconds / 1e6
    kernels = [{"name": name, "calls": calls, "seconds": seconds}
               for name, (calls, seconds) in sorted(totals.items(), key=lambda item: -item[1][1])]
    return {"activity": "cuda" if is_cuda else "cpu", "seconds": sum(k["seconds"] for k in kernels),
            "kernels": kernels}


def run(args) -> int:
    import torch

    from vnp.engine.devices import DTYPES, host_info, resolve_devices, resolve_precision
    from vnp.models.fused import fuse

    if args.tokens < 1 or args.repeats < 1:
        raise VnpError("--tokens and --repeats take a whole number of 1 or more")
    lengths = frame_lengths(args.frame_lengths) if args.frame_lengths else FRAME_LENGTHS[args.model]
    devices, gpus = resolve_devices(None, args.cpu)
    precision = resolve_precision(args.precision, gpus)
    device = torch.device(devices[0])
    model = build_model(args.model, args.model_size, device, getattr(torch, DTYPES[precision]), args.seed)
    model.attention = args.attention
    fallback = fuse(model) if args.kernels == "fused" else None
    if fallback:
        print(f"vnp: --kernels fused: {fallback}: profiling {args.model} eager", file=sys.stderr)
    batch = make_batch(model.config.vocab_size, args.tokens, lengths, device, args.seed)
    result, _ = measure(model, args.model, batch, args.repeats)
    document = {"schema": SCHEMA, "model": args.model, "model_size": args.model_size,
                "config": getattr(model.config, "name", None), "device": str(device), "precision": precision,
                "attention": args.attention, "kernels": args.kernels,
                "kernels_used": "fused" if model.fused is not None else "eager", "kernels_fallback": fallback,
                "host": host_info(gpus), **result}
    with atomic_write(args.out) as handle:
        json.dump(document, handle, indent=1)
        handle.write("\n")
    print(f"vnp: {args.model}: {result['tokens']:,} tokens at {result['tokens_per_second']:,.0f} tokens/s, "
          f"{result['fraction_of_gemm_ceiling']:.1%} of its GEMM-only ceiling "
          f"({result['gemm_only_tokens_per_second']:,.0f} tokens/s); wrote {args.out}", file=sys.stderr)
    return 0
