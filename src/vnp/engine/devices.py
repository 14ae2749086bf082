"""Which devices a run uses, in which precision, and how many tokens a batch may hold.

The parent process must not initialise CUDA (workers are spawned and each owns one GPU), so device
discovery here goes through NVML when it is installed and only falls back to torch when it is not.
"""

from __future__ import annotations

import os
import platform
import socket

from vnp.errors import VnpError

# fp8: the models load in bf16; ESM-2's linears become fp8 if the run's fidelity check passes (fidelity.py)
DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "fp8": "bfloat16"}
PRECISIONS = ("auto", *DTYPES)  # the --precision choices


def _nvml_gpus() -> list[dict] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver: no GPUs
        return []
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(handle)
            gpus.append(
                {
                    "index": index,
                    "name": name.decode() if isinstance(name, bytes) else name,
                    "total_bytes": int(pynvml.nvmlDeviceGetMemoryInfo(handle).total),
                    "capability": [int(major), int(minor)],
                }
            )
        return gpus
    finally:
        pynvml.nvmlShutdown()


def visible_gpus() -> list[dict]:
    """GPUs this process may use (CUDA_VISIBLE_DEVICES respected), without creating a CUDA context."""
    gpus = _nvml_gpus()
    if gpus is None:
        import torch

        if not torch.cuda.is_available():
            return []
        gpus = []
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            gpus.append({"index": index, "name": props.name, "total_bytes": int(props.total_memory),
                         "capability": [props.major, props.minor]})
        return gpus
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        wanted = [v.strip() for v in visible.split(",") if v.strip()]
        if not all(w.isdigit() for w in wanted):  # UUIDs: keep NVML's order, trust the count
            return [dict(g, index=i) for i, g in enumerate(gpus[: len(wanted)])]
        gpus = [dict(gpus[int(w)], index=i) for i, w in enumerate(wanted) if int(w) < len(gpus)]
    return gpus


def resolve_devices(gpus_option: str | None, force_cpu: bool) -> tuple[list[str], list[dict]]:
    """Device strings for the workers (``["cpu"]`` or ``["cuda:0", ...]``) and the GPUs' descriptions."""
    wanted = None if gpus_option is None else _gpu_indices(gpus_option)  # checked even with --cpu
    if force_cpu:
        return ["cpu"], []
    available = visible_gpus()
    if wanted is None:
        if not available:
            return ["cpu"], []
        return [f"cuda:{g['index']}" for g in available], available
    known = {g["index"]: g for g in available}
    missing = [w for w in wanted if w not in known]
    if missing:
        have = ",".join(str(i) for i in known) or "none"
        raise VnpError(f"--gpus asks for GPU {missing[0]}, but the visible GPUs are: {have}")
    return [f"cuda:{w}" for w in wanted], [known[w] for w in wanted]


def _gpu_indices(gpus_option: str) -> list[int]:
    try:
        wanted = [int(v) for v in gpus_option.split(",") if v.strip()]
    except ValueError:
        raise VnpError(f"--gpus takes GPU indices like 0,1,2,3, not {gpus_option!r}") from None
    if not wanted:
        raise VnpError("--gpus is empty")
    if len(set(wanted)) != len(wanted):
        raise VnpError(f"--gpus lists a GPU twice: {gpus_option}")
    return wanted


def resolve_precision(precision: str, gpus: list[dict]) -> str:
    """``auto``: bf16 on Ampere and newer, fp16 on older GPUs, fp32 on the CPU (which has no other)."""
    if not gpus and precision not in ("auto", "fp32"):
        raise VnpError(f"--precision {precision} needs a GPU; on the CPU use fp32")
    if precision == "fp8" and min(list(g["capability"]) for g in gpus) < [8, 9]:
        raise VnpError("--precision fp8 needs GPUs of compute capability 8.9 or newer (Ada, Hopper)")
    if precision != "auto":
        return precision
    if not gpus:
        return "fp32"
    return "bf16" if min(g["capability"][0] for g in gpus) >= 8 else "fp16"


def activation_bytes_per_token(hidden: int, ffn: int, precision: str) -> int:
    """A generous estimate of the transient memory one token needs inside one layer.

    The FFN's input, up-projection and activation, plus residual, norm and q/k/v/attention outputs:
    about 2*ffn + 8*hidden values. Only one layer is live at a time at inference.
    """
    element = 4 if precision == "fp32" else 2
    return element * (2 * ffn + 8 * hidden)


def default_token_budget(free_bytes: int, bytes_per_token: int, *, share: float = 0.5,
                         floor: int = 2048, ceiling: int = 65536) -> int:
    """Tokens per batch: half of the free memory after the weights, within [floor, ceiling].

    The ceiling exists because larger batches no longer speed up the GEMMs but do delay the first
    result and grow the OOM back-off step; the floor keeps small cards from degenerating to tiny batches.
    """
    budget = int(share * free_bytes) // max(bytes_per_token, 1)
    return max(floor, min(ceiling, budget))


def host_info(gpus: list[dict]) -> dict:
    import torch

    return {
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus": [{k: g[k] for k in ("index", "name", "total_bytes")} for g in gpus],
    }
