"""The bottleneck analysis and the fused kernels on one GPU, in one unattended command of about two minutes.

    python -m scripts.measure_kernels --out kernels.json

In process, with vnp's own profile functions (what `vnp profile` runs) on the full-size models with seeded random
weights in bf16, each built once by the first step that needs it: each step runs one packed batch (a warm-up,
``--repeats`` timed passes, one under torch's profiler) and the same shapes' GEMMs alone, then groups the kernels by
the harness's rules (`benchmarks/harness/kernel_groups.py`) and compares the pooled embeddings with the eager bf16
ones of the same batch. Steps, the most telling first (``--steps REGEX`` picks some):

- kernels: each fused kernel against its torch reference on this GPU (bf16), before anything relies on them;
- ESM-2 3B on 64,875 tokens of 51-52-token frames (the batch issue 22 profiled), eager and fused; DNABERT-S on
  65,536 tokens of 22-46-token frames, eager and fused (our attention, ALiBi in the kernel);
- fidelity: on a smaller batch of the same frames, eager bf16 and fused bf16 each against the same weights in fp32
  (how far each is from the exact result, beside how far they are from each other);
- typical: `vnp predict` of the 20,000-read dataset eager and fused, the calls compared;
- ESM-2 fused with fair-esm's erf GELU instead of the epilogue's tanh, with our attention kernel and with the
  memory-efficient kernel's varlen form instead of torch's flash varlen_attn; frames of 40-61 tokens (more than
  8 lengths: the eager attention's padded path) eager and fused; fp8 linears on the fused path, against eager
  bf16 with the fp8 gate's cosine bar; DNABERT-S fused with flash's varlen kernel taking the ALiBi slopes.

The JSON is rewritten after every step; a step that fails records its error and the others still run, and no
step starts after ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ESM_TOKENS, DNABERT_TOKENS = 64875, 65536
TYPICAL_SECONDS = 55  # what the two typical runs need, start-up included (~20 s each on an H200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=150.0,
                        help="start no step after this many seconds; the typical runs are killed 10 s after it")
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--model-size", default="full", choices=("tiny", "full"), help="tiny: a dry run")
    parser.add_argument("--steps", default="", metavar="REGEX", help="only the steps whose name matches")
    parser.add_argument("--esm-tokens", type=int, default=ESM_TOKENS)
    parser.add_argument("--dnabert-tokens", type=int, default=DNABERT_TOKENS)
    args = parser.parse_args()
    started = time.perf_counter()
    document = {"args": {k: str(v) for k, v in vars(args).items()}, "steps": {}, "errors": {}}

    def save() -> None:
        document["seconds"] = round(time.perf_counter() - started, 1)
        args.out.write_text(json.dumps(document, indent=1) + "\n")

    def step(name: str, function, *arguments, budget: float = 0.0) -> object:
        """Run one step; its result or its error goes into the JSON at once."""
        if not re.search(args.steps, name):
            return None
        if time.perf_counter() - started + budget > args.budget:
            document["errors"][name] = "skipped: out of time"
            save()
            return None
        try:
            result = function(*arguments)
        except Exception as error:  # one failing step must not lose the others
            document["errors"][name] = f"{type(error).__name__}: {error}"[:2000] + "\n" + traceback.format_exc()[-3000:]
            print(f"measure_kernels: {name}: FAILED {type(error).__name__}: {str(error)[:300]}", flush=True)
            save()
            return None
        document["steps"][name] = result
        print(f"measure_kernels: {name}: {json.dumps(brief(result))[:400]}", flush=True)
        save()
        return result

    document["host"] = step("host", host)
    runner = Runner(args)

    def profile(model: str, kernels: str, lengths: str, **environment) -> None:
        name = " ".join([model, kernels, lengths, *(f"{key}={value}" for key, value in environment.items())])
        step(name, runner.profile, model, kernels, lengths, environment)

    # the most telling first: a run cut short keeps them
    step("kernels", runner.check_kernels)
    profile("esm2", "eager", "51-52")
    profile("esm2", "fused", "51-52")
    step("esm2 fidelity against fp32", runner.fidelity, "esm2", "51-52")
    profile("dnabert", "eager", "22-46")
    profile("dnabert", "fused", "22-46")
    step("dnabert fidelity against fp32", runner.fidelity, "dnabert", "22-46")
    runner.drop()  # the typical runs size their batches from the GPU's free memory
    step("typical eager vs fused", runner.typical, budget=TYPICAL_SECONDS)
    profile("esm2", "fused", "51-52", VNP_FUSED_GELU="none")
    profile("esm2", "fused", "51-52", VNP_FUSED_ATTENTION_ESM2="triton")
    profile("esm2", "fused", "51-52", VNP_FUSED_ATTENTION_ESM2="efficient")
    profile("esm2", "eager", "40-61")
    profile("esm2", "fused", "40-61")
    step("esm2 fp8 fused 51-52", runner.profile_fp8)
    profile("dnabert", "fused", "22-46", VNP_FUSED_ATTENTION_DNABERT="flash")
    document["build_seconds"] = runner.build_seconds
    document["done"] = True
    save()


def brief(result):
    """What the log line shows of a step."""
    if not isinstance(result, dict):
        return result
    keys = ("kernels_used", "tokens_per_second", "gemm_only_tokens_per_second", "fraction_of_gemm_ceiling",
            "share", "vs_eager_bf16", "fuse_next", "labels_identical", "passed", "eager_bf16_vs_fp32",
            "fused_bf16_vs_fp32")
    return {k: result[k] for k in keys if k in result} or result


def host() -> dict:
    import torch

    from vnp.engine.devices import host_info, visible_gpus

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {**host_info(visible_gpus()), "triton": triton_version, "device_name": name}


class Runner:
    def __init__(self, args):
        import torch

        self.torch = torch
        self.args = args
        self.device = torch.device(args.device)
        self.models, self.references, self.build_seconds = {}, {}, {}
        self.deadline = time.perf_counter() + args.budget + 10

    def model(self, name: str):
        """``name`` with seeded random weights, built by the first step that needs it."""
        from vnp.profile import build_model

        if name not in self.models:
            started = time.perf_counter()
            self.models[name] = build_model(name, self.args.model_size, self.device, self.torch.bfloat16)
            self.build_seconds[name] = round(time.perf_counter() - started, 2)
        return self.models[name]

    def drop(self) -> None:
        """Free the GPU's memory (the eager embeddings stay: a model is rebuilt with the same seeded weights)."""
        self.models.clear()
        if self.torch.cuda.is_available():
            self.torch.cuda.empty_cache()

    def profile(self, name: str, kernels: str, lengths: str, environment: dict) -> dict:
        """One batch through ``name`` with eager or fused kernels (``environment``: the fused variant)."""
        from vnp.models.fused import fuse
        from vnp.profile import frame_lengths, make_batch, measure

        model = self.model(name)
        model.fused, fallback = None, None
        if kernels == "fused":
            with overridden(environment):  # the VNP_FUSED_* variant, read when the fused encoder is made
                fallback = fuse(model)
        tokens = self.args.esm_tokens if name == "esm2" else self.args.dnabert_tokens
        batch = make_batch(model.config.vocab_size, tokens, frame_lengths(lengths), self.device)
        result, embeddings = measure(model, name, batch, self.args.repeats)
        model.fused = None
        return self._summarise(name, lengths, kernels, fallback, result, embeddings)

    def fidelity(self, name: str, lengths: str, tokens: int = 4096) -> dict:
        """Eager and fused bf16 against fp32 of the same weights (the bf16 ones, widened) on ``tokens`` tokens."""
        import copy

        from vnp.engine.worker import sdpa_backends
        from vnp.models.fused import fuse
        from vnp.profile import frame_lengths, make_batch

        torch, model = self.torch, self.model(name)
        model.fused = None
        exact = copy.deepcopy(model).float()
        batch = make_batch(model.config.vocab_size, tokens, frame_lengths(lengths), self.device)
        inputs = (batch.tokens, batch.cu_seqlens, batch.max_seqlen)
        with sdpa_backends(name):
            truth, eager = exact.embed_packed(*inputs), model.embed_packed(*inputs)
            fallback = fuse(model)
            fused = model.embed_packed(*inputs)
        model.fused = None
        del exact
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        return {"tokens": batch.num_tokens, "kernels_fallback": fallback,
                "eager_bf16_vs_fp32": agreement(truth, eager), "fused_bf16_vs_fp32": agreement(truth, fused),
                "fused_vs_eager_bf16": agreement(eager, fused)}

    def profile_fp8(self) -> dict:
        """ESM-2's linears in fp8 (models/fp8.py) on the fused path, against eager bf16 with the fp8 gate's bar."""
        from vnp.engine.fidelity import Bars
        from vnp.models.fp8 import restore, to_fp8
        from vnp.models.fused import fuse
        from vnp.profile import frame_lengths, make_batch, measure

        model = self.model("esm2")
        swapped = to_fp8(model)
        try:
            fallback = fuse(model)
            batch = make_batch(model.config.vocab_size, self.args.esm_tokens, frame_lengths("51-52"), self.device)
            result, embeddings = measure(model, "esm2", batch, self.args.repeats)
        finally:
            model.fused = None
            restore(swapped)
        summary = self._summarise("esm2", "51-52", "fused", fallback, result, embeddings)
        cosine = summary["vs_eager_bf16"]
        if cosine:
            bars = Bars()
            cosine["fp8_gate_min_cosine"] = bars.min_cosine
            cosine["fp8_gate_cosine_share_needed"] = bars.cosine_share
            cosine["passes_cosine_bar"] = cosine["share_at_least_0.999"] >= bars.cosine_share
        return summary

    def _summarise(self, name, lengths, kernels, fallback, result, embeddings) -> dict:
        from benchmarks.harness import kernel_groups

        used = "fused" if kernels == "fused" and fallback is None else "eager"
        summary = {"kernels_used": used, "kernels_fallback": fallback, **{k: v for k, v in result.items()
                                                                         if k != "profile"}}
        if result["profile"]:
            grouped = kernel_groups.summary({"model": name, "kernels_used": used, **result})
            summary.update({key: grouped[key] for key in ("seconds", "share", "ns_per_token", "fuse_next", "unknown")})
            summary["profiled_seconds"] = grouped["total_seconds"]
            summary["top_kernels"] = [{**k, "name": k["name"][:240],
                                       "category": kernel_groups.category(k["name"], name)}
                                      for k in result["profile"]["kernels"][:25]]
        key = (name, lengths)
        if used == "eager" and kernels == "eager":
            self.references[key] = embeddings
        reference = self.references.get(key)
        summary["vs_eager_bf16"] = None if reference is None else agreement(reference, embeddings)
        return summary

    def check_kernels(self) -> dict:
        """Each kernel against its reference on shapes of the real models, bf16, on this GPU."""
        torch = self.torch
        from vnp.kernels import unavailable

        reason = unavailable(self.device)
        if reason:
            return {"passed": False, "reason": reason}
        from vnp.kernels.attention import packed_attention, packed_attention_reference
        from vnp.kernels.geglu import geglu, geglu_reference
        from vnp.kernels.layer_norm import add_layer_norm, add_layer_norm_reference
        from vnp.kernels.rotary import rotary_qk_, rotary_qk_reference, rotary_tables

        generator = torch.Generator(device=self.device).manual_seed(0)

        def randn(*shape):
            return torch.randn(*shape, generator=generator, device=self.device).to(torch.bfloat16)

        lengths = torch.tensor([130, 64, 61, 52, 52, 51, 40, 3, 1])
        cu = torch.nn.functional.pad(lengths.cumsum(0), (1, 0)).to(self.device, torch.int32)
        tokens = int(lengths.sum())
        checks = {}

        def compare(name, got, expected):
            error = (got.float() - expected.float()).abs()
            scale = expected.float().abs().max().clamp(min=1e-6)
            checks[name] = {"max_abs_error": float(error.max()), "max_abs_value": float(scale),
                            "passed": bool(error.max() <= 0.02 * scale)}

        with torch.inference_mode():
            q, k = randn(tokens, 40, 64), randn(tokens, 40, 64)
            positions = torch.cat([torch.arange(n) for n in lengths.tolist()]).to(self.device)
            inv_freq = 1.0 / 10000 ** (torch.arange(0, 64, 2, device=self.device).float() / 64)
            cos, sin = rotary_tables(positions, inv_freq)
            expected = rotary_qk_reference(q, k, cos, sin, 0.125)
            rotary_qk_(q, k, cos, sin, 0.125)
            compare("rotary q", q, expected[0])
            compare("rotary k", k, expected[1])
            qkv = randn(tokens, 3, 12, 64)
            slopes = torch.linspace(0.5, 0.002, 12, device=self.device)
            for alibi in (None, slopes):
                got = packed_attention(*qkv.unbind(1), cu, int(lengths.max()), 0.125, alibi)
                expected = packed_attention_reference(*qkv.unbind(1), cu, 0.125, alibi)
                compare(f"attention{' alibi' if alibi is not None else ''}", got, expected)
            norm = torch.nn.LayerNorm(2560, device=self.device, dtype=torch.bfloat16)
            x, residual = randn(tokens, 2560), randn(tokens, 2560)
            eager_x = x.clone()
            expected = add_layer_norm_reference(eager_x, residual, norm, True)
            compare("add layer norm", add_layer_norm(x, residual, norm, True), expected)
            compare("add layer norm sum", x, eager_x)
            gated = randn(tokens, 2 * 3072)
            compare("geglu", geglu(gated), geglu_reference(gated))
        return {"passed": all(c["passed"] for c in checks.values()), "checks": checks}

    def typical(self) -> dict:
        """`vnp predict` of the typical dataset, eager then fused: speed per stage and the calls compared."""
        from benchmarks.harness import datasets

        fasta = datasets.get("typical").path
        runs = {}
        with tempfile.TemporaryDirectory(prefix="vnp-measure-kernels-") as folder:
            for kernels in ("eager", "fused"):
                out = Path(folder) / kernels
                command = [sys.executable, "-m", "vnp", "predict", str(fasta), "-o", str(out), "-m", "300",
                           "--quiet", "--kernels", kernels, "--model-size", self.args.model_size,
                           *(["--cpu"] if self.device.type == "cpu" else [])]
                started = time.perf_counter()
                done = subprocess.run(command, capture_output=True, text=True,
                                      timeout=max(5.0, self.deadline - started))
                record = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
                stages = {s["name"]: s for s in record.get("stages", [])}
                runs[kernels] = {
                    "exit": done.returncode, "stderr_tail": done.stderr[-1500:],
                    "wall_seconds": round(time.perf_counter() - started, 2),
                    "kernels_used": record.get("kernels_used"),
                    "tokens_per_second": {name: stages[name]["tokens"] / stages[name]["seconds"]
                                          for name in ("esm2", "dnabert")
                                          if name in stages and stages[name].get("seconds")},
                    "steady_tokens_per_second": [w.get("steady_tokens_per_second") for w in record.get("workers", [])],
                    "kernels": [w.get("kernels") for w in record.get("workers", [])],
                }
                runs[kernels]["rows"] = _rows(out / "prediction_results.txt")
                runs[kernels]["highestscore"] = _read(out / "prediction_results_highestscore.csv")
        eager, fused = (runs[k].pop("rows") for k in ("eager", "fused"))
        highest = [runs[k].pop("highestscore") for k in ("eager", "fused")]
        same_frames = [r[0] for r in eager] == [r[0] for r in fused]
        differences = [abs(float(a) - float(b)) for e, f in zip(eager, fused) for a, b in zip(e[2:], f[2:])]
        return {"runs": runs, "frames": len(eager), "same_frames": same_frames,
                "labels_identical": same_frames and [r[1] for r in eager] == [r[1] for r in fused],
                "labels_differing": sum(e[1] != f[1] for e, f in zip(eager, fused)),
                "highestscore_identical": highest[0] is not None and highest[0] == highest[1],
                "score_max_abs_diff": max(differences, default=None)}


@contextlib.contextmanager
def overridden(environment: dict):
    saved = {key: os.environ.get(key) for key in environment}
    os.environ.update(environment)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                del os.environ[key]
            else:
                os.environ[key] = value


def agreement(reference, candidate) -> dict:
    import torch

    cosine = torch.nn.functional.cosine_similarity(reference.double(), candidate.double(), dim=1)
    return {"cosine_min": float(cosine.min()), "cosine_mean": float(cosine.mean()),
            "share_at_least_0.99999": float((cosine >= 0.99999).double().mean()),
            "share_at_least_0.999": float((cosine >= 0.999).double().mean()),
            "max_abs_diff": float((reference - candidate).abs().max())}


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()[1:]] if path.exists() else []


def _read(path: Path) -> bytes | None:
    return path.read_bytes() if path.exists() else None


if __name__ == "__main__":
    main()
