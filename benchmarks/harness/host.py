"""What this host offers the benchmarks, read without initialising CUDA (NVML only).

GPUs are numbered as the pipeline sees them: the order of CUDA_VISIBLE_DEVICES, with NVML's PCI-bus
order underneath (the harness runs the pipeline with CUDA_DEVICE_ORDER=PCI_BUS_ID so the two agree).

The asv machine name carries the scale where it is not a GPU one (`box-ci`), so a ci-scale point and a
gpu-scale point of one host never share a graph line on the dashboard.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import time
from pathlib import Path

from benchmarks.harness import scale


@contextlib.contextmanager
def nvml():
    """The initialised pynvml module, or None without nvidia-ml-py or a driver."""
    try:
        import pynvml
    except ImportError:
        yield None
        return
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no device: a CPU host
        yield None
        return
    try:
        yield pynvml
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


def visible_nvml_indices(pynvml) -> list[int]:
    """NVML indices of the GPUs CUDA would show this process, in CUDA's order."""
    count = pynvml.nvmlDeviceGetCount()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    indices = []
    for item in (v.strip() for v in visible.split(",")):
        if item.isdigit() and int(item) < count:
            indices.append(int(item))
        elif item.startswith(("GPU-", "MIG-")):
            with contextlib.suppress(Exception):
                indices.append(pynvml.nvmlDeviceGetIndex(pynvml.nvmlDeviceGetHandleByUUID(item)))
        else:
            break  # CUDA stops at the first entry it cannot parse
    return indices


def gpu_processes(pynvml, handle) -> dict[int, int]:
    """{pid: bytes} of the compute processes on one GPU (bytes 0 where NVML cannot say)."""
    try:
        processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except Exception:  # not supported here (some virtualised GPUs): nothing known
        return {}
    return {int(p.pid): int(p.usedGpuMemory or 0) for p in processes}


def wait_for_idle_gpus(gpus: list[int], timeout_s: float = 30.0, poll_s: float = 0.5) -> dict[int, dict[int, int]]:
    """Wait until no process computes on these GPUs (CUDA's numbering), at most `timeout_s`; return what still
    does. A run started while the last one's processes are still releasing their memory would share the card."""
    deadline = time.monotonic() + timeout_s
    with nvml() as pynvml:
        if not pynvml or not gpus:
            return {}
        indices = visible_nvml_indices(pynvml)
        handles = {gpu: pynvml.nvmlDeviceGetHandleByIndex(indices[gpu]) for gpu in gpus if gpu < len(indices)}
        while True:
            busy = {gpu: found for gpu, handle in handles.items() if (found := gpu_processes(pynvml, handle))}
            if not busy or time.monotonic() >= deadline:
                return busy
            time.sleep(poll_s)


def gpu_count() -> int:
    """GPUs the pipeline could use here (0 on a CPU host)."""
    with nvml() as pynvml:
        return len(visible_nvml_indices(pynvml)) if pynvml else 0


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def machine_info() -> dict:
    """asv machine fields, plus the GPU model and count, CUDA driver and NVIDIA driver version."""
    info = {
        "machine": machine_name(),
        "os": f"{platform.system()} {platform.release()}",
        "arch": platform.machine(),
        "cpu": _cpu_model(),
        "num_cpu": str(os.cpu_count()),
        "ram": str(_total_ram_bytes()),
        "gpu": "none",
        "num_gpu": "0",
        "cuda_driver": "",
        "nvidia_driver": "",
    }
    with nvml() as pynvml:
        if pynvml:
            indices = visible_nvml_indices(pynvml)
            names = sorted({_text(pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))) for i in indices})
            cuda = pynvml.nvmlSystemGetCudaDriverVersion()
            info.update(gpu=" + ".join(names) or "none", num_gpu=str(len(indices)),
                        cuda_driver=f"{cuda // 1000}.{cuda % 1000 // 10}",
                        nvidia_driver=_text(pynvml.nvmlSystemGetDriverVersion()))
    return info


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _total_ram_bytes() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def machine_name(at: scale.Scale | None = None) -> str:
    """The asv machine the results go to: VNP_BENCH_MACHINE, else the only one in ~/.asv-machine.json,
    else the short host name; with `-ci` at the ci scale. ``at``: the scale the run is at (default: the
    VNP_BENCH_SCALE of asv's runs; ``scripts.requirement --scale`` names its own)."""
    name = os.environ.get("VNP_BENCH_MACHINE")
    if not name:
        with contextlib.suppress(OSError, ValueError):
            machines = [k for k in json.loads((Path.home() / ".asv-machine.json").read_text()) if k != "version"]
            name = machines[0] if len(machines) == 1 else None
    name = name or socket.gethostname().split(".")[0]
    for other in scale.SCALES.values():  # the suffix is the scale's to decide: box-ci at the gpu scale is box
        if not other.on_gpu:
            name = name.removesuffix(f"-{other.name}")
    at = at or scale.current()
    return name if at.on_gpu else f"{name}-{at.name}"


def write_asv_machine_file(info: dict, path: Path | None = None) -> Path:
    """Add (or replace) this machine in asv's machine file, with every field filled.

    `asv machine --yes --machine NAME` would store only the name (any non-default field turns asv's
    auto-fill off), so the file is written here, GPU model and count included.
    """
    path = path or Path.home() / ".asv-machine.json"  # where asv looks for it
    machines = {}
    with contextlib.suppress(OSError, ValueError):
        machines = json.loads(path.read_text())
    machines[info["machine"]] = info
    machines["version"] = 1
    path.write_text(json.dumps(machines, indent=4) + "\n")
    return path


if __name__ == "__main__":  # scripts/bench.sh: `python -m benchmarks.harness.host --write`
    import sys

    details = machine_info()
    if "--name" in sys.argv[1:]:  # the machine name alone, for the scripts' --machine
        print(details["machine"])
    elif "--write" in sys.argv[1:]:
        print(f"asv machine {details['machine']} ({details['num_gpu']} x {details['gpu']}) -> "
              f"{write_asv_machine_file(details)}")
    else:
        print(json.dumps(details, indent=1))
