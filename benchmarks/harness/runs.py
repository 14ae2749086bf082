"""One measured pipeline run: dataset, command line, samplers, time limit, validation, RunRecord.

`execute(spec)` is the only place a benchmark starts the pipeline. It skips (raises `Skip`) what this
host or scale cannot run, kills a run that exceeds its wall-clock limit, validates every run (records
in = records out) and writes its RunRecord, raising `RunFailed` when the run cannot be trusted.

Long runs survive interruption: each run has a stable work directory per machine, commit and
configuration; a run killed from outside (asv's timeout, a reboot) left no record, so the next attempt
finds its directory and continues it with the pipeline's `--resume` (recorded as `harness.resumed`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.harness import datasets, host, peer_programs, record, targets
from benchmarks.harness import scale as scales
from benchmarks.harness.samplers import Sampler

REPO = Path(__file__).resolve().parents[2]


class Skip(Exception):
    """This host or scale cannot run the configuration; asv shows the benchmark as n/a."""


class RunFailed(Exception):
    """The pipeline failed, overran its limit, or its output does not account for every input record."""


@dataclass(frozen=True)
class RunSpec:
    """A pipeline configuration. `variant` labels it in record names; `options` are the semantic flags
    that make it differ from the pipeline's defaults (see `targets.Target.argv`)."""

    suite: str
    role: str  # dataset role, mapped to a dataset by the scale
    gpus: int = 1
    variant: str = "all"
    options: tuple = ()  # ((name, value), ...)
    env: tuple = ()  # ((name, value), ...)
    program: str = ""  # "" the command under test (targets.current()); "original" or "fork": VirNucPro's

    @classmethod
    def make(cls, suite: str, role: str, gpus: int = 1, variant: str = "all", options: dict | None = None,
             env: dict | None = None, program: str = "") -> RunSpec:
        return cls(suite, role, int(gpus), variant, tuple(sorted((options or {}).items())),
                   tuple(sorted((env or {}).items())), program)

    @property
    def key(self) -> str:
        return record.record_name(self.suite, self.role, self.gpus, self.variant)


def commit_id() -> str:
    """The commit asv is benchmarking (ASV_COMMIT), else this checkout's HEAD."""
    if os.environ.get("ASV_COMMIT"):
        return os.environ["ASV_COMMIT"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if done.returncode == 0:
            return done.stdout.strip()
    return "unknown"


def work_root() -> Path:
    return Path(os.environ.get("VNP_BENCH_WORK") or datasets.cache_dir() / "work")


def device_options(spec: RunSpec, scale: scales.Scale) -> dict:
    """--cpu or --gpus 0..n-1; `Skip` for GPU counts this host (or scale) does not offer."""
    if not scale.on_gpu:
        if spec.gpus != 1:
            raise Skip(f"the {scale.name} scale runs on one CPU device, not {spec.gpus}")
        return {"cpu": True}
    available = host.gpu_count()
    if spec.gpus > available:
        raise Skip(f"needs {spec.gpus} GPUs, this host has {available}")
    if spec.role in scale.all_gpus_only:
        widest = max(n for n in scales.GPU_COUNTS if n <= available)
        if spec.gpus != widest:
            raise Skip(f"{spec.role} runs only on all {widest} GPUs of this host")
    return {"gpus": list(range(spec.gpus))}


def execute(spec: RunSpec, scale: scales.Scale | None = None, target: targets.Target | None = None,
            sampling: bool = True, resume: bool = True, keep_outputs: Path | None = None) -> dict:
    """Run `spec` once, measured and validated; return its RunRecord (also written to disk).

    `sampling=False` runs without the NVML and psutil samplers (to measure what they cost);
    `resume=False` starts over even where an interrupted attempt left its work (for asv's own timing);
    `keep_outputs`: a folder to copy the validated run's two output files to (to compare them afterwards).
    """
    scale = scale or scales.current()
    if spec.role not in scale.datasets:
        raise Skip(f"the {scale.name} scale has no {spec.role} dataset")
    try:
        target = target or targets.for_program(spec.program, scale)
    except peer_programs.Missing as missing:
        raise Skip(str(missing)) from None
    devices = device_options(spec, scale)
    try:
        data = datasets.get(scale.datasets[spec.role])
    except datasets.DatasetError as error:
        raise RunFailed(str(error)) from None
    options = {"model_type": data.model_type, "model_size": scale.model_size, **devices, "quiet": True,
               **dict(spec.options)}

    machine, commit = host.machine_name(scale), commit_id()
    name = record.record_name(spec.suite, data.name, spec.gpus, spec.variant)
    records_dir = record.records_root() / machine / commit[:8]
    repeat = record.next_repeat(records_dir, name)
    workdir = work_root() / machine / commit[:8] / f"{name}-r{repeat}"
    outdir = workdir / "out"
    try:
        resumed = _reuse_outdir(outdir, target, resume)
        argv = target.argv(data.path, outdir, {**options, "resume": resumed})
    except targets.Unsupported as error:
        raise Skip(str(error)) from None
    except targets.CommandFailed as error:
        raise RunFailed(str(error)) from None

    limit = scale.run_limit_s(data.composition["esm_tokens"])
    interval = float(os.environ.get("VNP_BENCH_SAMPLER_INTERVAL") or scale.sampler_interval_s)
    env = {**os.environ, **dict(spec.env), **target.environment(options)}
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # CUDA numbers GPUs as NVML (the sampler) does
    workdir.mkdir(parents=True, exist_ok=True)
    _say(f"{name}-r{repeat}: {'resuming' if resumed else 'running'} {' '.join(argv[len(target.command):])}")

    busy_before = host.wait_for_idle_gpus(devices.get("gpus") or [])
    exit_code, timed_out, started_at, ended_at, sampler = _run(argv, env, limit, workdir / "pipeline.log",
                                                               interval if sampling else None)
    samples = sampler.stop() if sampler else Sampler.no_samples()
    run = target.read_run(outdir, exit_code, started_at, ended_at)
    results_path, consensus_path = target.output_files(outdir)
    results_rows, consensus_rows = record.data_lines(results_path), record.data_lines(consensus_path)
    problems = record.validate(data.composition, run, results_rows, consensus_rows, exit_code,
                               record.distinct_ids(results_path), record.distinct_ids(consensus_path))
    if timed_out:
        problems.insert(0, f"killed after its {limit:.0f} s limit")
    harness = {
        "target": target.name, "command": target.command, "suite": spec.suite, "dataset": data.name,
        "role": spec.role, "scale": scale.name, "model_size": scale.model_size, "model_type": data.model_type,
        "gpus": spec.gpus, "variant": spec.variant, "options": dict(spec.options), "env": dict(spec.env),
        "repeat": repeat, "machine": machine, "commit": commit, "argv": argv,
        "started_at": started_at, "ended_at": ended_at, "wall_seconds": ended_at - started_at,
        "exit_code": exit_code, "limit_s": limit, "validated": not problems, "problems": problems,
        "records_in": data.composition["frames"], "records_out": results_rows,
        "consensus_in": data.composition["chunks_with_frame"], "consensus_out": consensus_rows,
        "expected": data.composition, "resumed": resumed, "target_setup": target.setup(),
        "sampler_interval_s": interval if sampling else None,
        "sampler_cpu_seconds": sampler.cpu_seconds if sampler else None,
        "log_tail": _tail(workdir / "pipeline.log") if problems else None,
        # Other processes on the run's GPUs: before it (still there after the wait) and during it. A whole-card
        # figure (NVML's memory) of a shared card is not the run's own.
        "gpu_processes_before": {str(gpu): found for gpu, found in busy_before.items()},
        "card_shared": card_shared(samples["nvml"]),
    }
    result = record.build(harness, run, samples)
    record.write(result, record.record_path(machine, commit, name, repeat))
    verdict = "; ".join(problems) or "validated"
    _say(f"{name}-r{repeat}: {harness['wall_seconds']:.1f} s, {verdict}")
    if problems:
        tail = f" ({harness['log_tail']})" if harness["log_tail"] else ""
        raise RunFailed(f"{name}-r{repeat}: {verdict}{tail}")
    if keep_outputs:
        keep_outputs.mkdir(parents=True, exist_ok=True)
        for path in (results_path, consensus_path):
            shutil.copyfile(path, keep_outputs / path.name)
    if not os.environ.get("VNP_BENCH_KEEP"):
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def card_shared(nvml: dict) -> bool | None:
    """True if a process outside the pipeline held memory on one of its GPUs while it ran; None where that cannot
    be told (no NVML samples, no process list, or NVML's process ids are not this host's: none was ours)."""
    others = [b for b in nvml.get("others_bytes") or [] if b is not None]
    ours = [b for b in nvml.get("ours_bytes") or [] if b is not None]
    if not others or not any(ours):
        return None
    return any(others)


def warm_up(scale: scales.Scale) -> None:
    """One run of the scale's warm-up dataset on the first device, untimed, unchecked and unrecorded: the first
    process to use a GPU after a while reads CUDA's libraries from disk and meets cold clocks and caches, and no
    measured run should be that process."""
    try:
        target = targets.current()
        data = datasets.get(scale.warmup_dataset)
        options = {"model_type": data.model_type, "model_size": scale.model_size, "quiet": True,
                   **device_options(RunSpec.make("warmup", "warmup"), scale)}
        work = work_root() / "warmup"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        argv = target.argv(data.path, work / "out", options)
    except (datasets.DatasetError, Skip, targets.Unsupported, targets.CommandFailed, peer_programs.Missing) as error:
        _say(f"no warm-up: {error}")
        return
    env = {**os.environ, **scale.env, **target.environment(options)}
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    exit_code, _, started_at, ended_at, _ = _run(argv, env, scale.run_limit_s(data.composition["esm_tokens"]),
                                                 work / "pipeline.log", None)
    _say(f"warm-up ({data.name}): {ended_at - started_at:.1f} s, exit code {exit_code} (not measured)")
    shutil.rmtree(work, ignore_errors=True)


def _reuse_outdir(outdir: Path, target: targets.Target, resume: bool) -> bool:
    """True if OUTDIR holds an interrupted run to --resume; a finished or unresumable one is removed."""
    if not outdir.exists():
        return False
    finished = False
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        finished = json.loads((outdir / "run.json").read_text())["exit"]["status"] == "ok"
    if resume and not finished and "--resume" in target.flags:
        return True
    shutil.rmtree(outdir)
    return False


def _run(argv: list[str], env: dict, limit: float, log: Path, interval: float | None):
    """Run the pipeline (output to `log`) under samplers and a wall-clock limit."""
    with open(log, "ab") as log_file:
        started_at = time.time()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        sampler = Sampler(interval).start(process.pid) if interval else None
        timed_out = False
        try:
            process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if process.poll() is None:  # over the limit, or the benchmark itself is being stopped
                _kill_tree(process)
        ended_at = time.time()
    return process.returncode, timed_out, started_at, ended_at, sampler


def _kill_tree(process: subprocess.Popen) -> None:
    """Kill the pipeline and its workers (they share asv's process group, so asv's own kill reaches them too)."""
    with contextlib.suppress(Exception):
        import psutil

        for child in psutil.Process(process.pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
    process.kill()
    process.wait()


def _tail(log: Path, lines: int = 3) -> str | None:
    with contextlib.suppress(OSError):
        text = log.read_text(errors="replace").strip().splitlines()
        return " | ".join(text[-lines:]) or None
    return None


def _say(message: str) -> None:
    print(f"[vnp-bench] {message}", file=sys.stderr, flush=True)
