"""The harness's own rules for where a profiled kernel's time goes: kernel name -> category.

`vnp profile` lists kernels by the names torch's profiler gives them (CUDA kernels on a GPU, aten operators on
the CPU); these rules, not the pipeline, say what each one is. The first matching rule wins, so the specific
ones come first: the memory-efficient attention kernel is a CUTLASS kernel (`fmha_cutlassF...`), and cuBLASLt
GEMMs may carry their epilogue's name (bias, GELU). One name can do different jobs in different models: an
elementwise multiply is ESM-2's rotary (with its addcmul) but DNABERT-S's GELU gate, hence the rules per model.
A name no rule knows is `other`, which the report shows, so a new kernel is seen rather than misfiled.
"""

from __future__ import annotations

import re

CATEGORIES = ("gemm", "attention", "rotary", "scatter_gather", "normalisation", "activation", "residual", "copy",
              "other")
GLUE = tuple(c for c in CATEGORIES if c != "gemm")  # what runs between the GEMMs: what fusing can remove
UNKNOWN_SHARE = 0.005  # a kernel of `other` that takes this share of the time is named in the summary

_RULES = (
    ("attention", r"fmha|flash|efficient_attention|attention|sdpa|softmax"),
    ("gemm", r"nvjet|gemm|cutlass|xmma|cublas|splitkreduce|wgmma|"
             r"aten::(mm|addmm|_addmm_activation|bmm|baddbmm|matmul|linear|_scaled_mm)$"),
    ("normalisation", r"layer_?norm"),
    ("rotary", r"rotary|\b(sin|cos)_kernel|aten::(sin|cos)$"),
    ("activation", r"gelu|geglu"),
)
_MODEL_RULES = {
    "esm2": (("rotary", r"mulfunctor|addcmul|aten::mul$"),),  # q and k times cos and sin (models/esm2.py rotate)
    "dnabert": (("activation", r"mulfunctor|aten::mul$"),),  # gelu(a) * b (models/dnabert.py)
}
_LAST_RULES = (
    # the padded attention path: scatter into the [B, L] grid, gather back, the grid's zero fill, key masks
    ("scatter_gather", r"index_copy|index_put|indexfunc|index_elementwise|index_kernel|scatter|gather|"
                       r"fillfunctor|fill_kernel|where_kernel|masked_fill|"
                       r"aten::(index|index_copy_|index_put_|zero_|fill_|zeros|where|masked_fill)$"),
    ("copy", r"memcpy|memset|copy_kernel|catarray|aten::(copy_|_to_copy|cat|clone)$"),
    ("residual", r"cudafunctor_add|aten::add_?$"),
)


def rules(model: str) -> list[tuple[str, re.Pattern]]:
    """The rules for ``model``'s kernels, in the order they are tried."""
    ordered = (*_RULES, *_MODEL_RULES.get(model, ()), *_LAST_RULES)
    return [(category, re.compile(pattern, re.IGNORECASE)) for category, pattern in ordered]


def category(name: str, model: str) -> str:
    for found, pattern in rules(model):
        if pattern.search(name):
            return found
    return "other"


def grouped(kernels: list[dict], model: str) -> dict[str, float]:
    """Seconds per category (every category present, 0 when none) of a profile's ``kernels``."""
    seconds = dict.fromkeys(CATEGORIES, 0.0)
    for kernel in kernels:
        seconds[category(kernel["name"], model)] += float(kernel["seconds"])
    return seconds


def summary(profile: dict) -> dict:
    """A `vnp profile` document's numbers the benchmarks track: seconds, shares and ns per token by category,
    and the GEMM-only ceiling."""
    kernels = profile["profile"]["kernels"]
    seconds = grouped(kernels, profile["model"])
    total = sum(seconds.values())
    tokens = profile["tokens"]
    return {
        "model": profile["model"], "kernels_used": profile["kernels_used"], "tokens": tokens,
        "activity": profile["profile"]["activity"], "total_seconds": total,
        "seconds": seconds,
        "share": {name: value / total if total > 0 else None for name, value in seconds.items()},
        "ns_per_token": {name: value / tokens * 1e9 for name, value in seconds.items()},
        "tokens_per_second": profile["tokens_per_second"],
        "gemm_only_tokens_per_second": profile["gemm_only_tokens_per_second"],
        "fraction_of_gemm_ceiling": profile["fraction_of_gemm_ceiling"],
        # the largest category of glue: what to fuse next (`other` names no work to fuse)
        "fuse_next": max((c for c in GLUE if c != "other"), key=lambda name: seconds[name]) if total > 0 else None,
        "unknown": sorted(k["name"] for k in kernels if category(k["name"], profile["model"]) == "other"
                          and k["seconds"] >= UNKNOWN_SHARE * total),
    }
