"""The commands the benchmarks drive, through the command line (`vnp predict INPUT -o OUTDIR [options]`, with
exit code 0 or a one-line reason on stderr; docs/architecture.md).

* `vnp`: the pipeline installed in asv's environment for the commit under test (`python -m vnp predict`).
* `cli`: any VirNucPro-compatible command named by `VNP_BENCH_COMMAND` (for example `virnucpro predict`
  or `python -m virnucpro predict`). Its run record is OUTDIR/run.json when it writes one, otherwise a
  vnp-run/1-shaped dict built from the stage times in OUTDIR/.checkpoints/pipeline_state.json.

A run is described by semantic options (`{"precision": "bf16", "packing": False, ...}`); each target turns
them into flags and refuses, with `Unsupported`, a flag its `--help` does not list, so that a benchmark of
an old commit or of another tool is skipped instead of run with a different configuration.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.harness import peer_programs, weights_kit

RESULTS = "prediction_results.txt"
CONSENSUS = "prediction_results_highestscore.csv"
FLAG = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")

# The fork's checkpoint stages, folded into the run record's stage names.
STATE_STAGES = {
    "CHUNKING": "preprocess", "TRANSLATION": "preprocess", "NUCLEOTIDE_SPLITTING": "preprocess",
    "PROTEIN_SPLITTING": "preprocess", "NUCLEOTIDE_FEATURES": "dnabert", "PROTEIN_FEATURES": "esm2",
    "FEATURE_MERGING": "classify", "PREDICTION": "classify", "CONSENSUS": "consensus",
}


SWITCHES = ("cpu", "resume", "quiet", "expandable_segments", "force")  # flags without a --no- form


class Unsupported(Exception):
    """The target cannot run this configuration (a flag it lacks); the benchmark is skipped."""


class CommandFailed(Exception):
    """The command does not even answer --help: the commit is broken, and its benchmarks fail."""


class Target:
    def __init__(self, name: str, command: list[str]):
        self.name = name
        self.command = command

    def __repr__(self) -> str:
        return f"Target({self.name!r}, {shlex.join(self.command)!r})"

    @functools.cached_property
    def flags(self) -> frozenset[str]:
        """Every option the command's --help mentions."""
        try:
            done = subprocess.run([*self.command, "--help"], capture_output=True, text=True, timeout=120,
                                  env={**os.environ, **self.environment({})})
        except (OSError, subprocess.TimeoutExpired) as error:
            raise CommandFailed(f"{shlex.join(self.command)} --help failed: {error}") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise CommandFailed(f"{shlex.join(self.command)} --help exited {done.returncode}: {last}")
        return frozenset(FLAG.findall(done.stdout))

    def argv(self, input_path: Path, outdir: Path, options: dict) -> list[str]:
        """The command line for one run; `Unsupported` if the command lacks a flag the options need."""
        options = self._with_kit(options)
        flags = []
        for name, value in options.items():
            flags += self._flag(name, value)
        for flag in flags:
            if flag.startswith("-") and flag not in self.flags:
                raise Unsupported(f"{self.name} has no {flag} (needed for {self._describe(options)})")
        return [*self.command, str(input_path), "-o", str(outdir), *flags]

    @staticmethod
    def _with_kit(options: dict) -> dict:
        """`weights_kit`: vnp's weight options for the kit's files, which bring their own shapes (no --model-size)."""
        if not options.get("weights_kit"):
            return options
        kit = weights_kit.Kit.open(options["weights_kit"])
        rest = {k: v for k, v in options.items() if k not in ("weights_kit", "model_size")}
        return {**rest, **kit.vnp_options(int(options.get("model_type") or 500))}

    def setup(self) -> dict:
        """What the target set up for the command (clone, commit, packages, variables), for the run's record."""
        return {}

    def _flag(self, name: str, value) -> list[str]:
        if value is None or (value is False and name in SWITCHES):
            return []
        if name == "cpu":
            return ["--cpu"] if "--cpu" in self.flags or "--device" not in self.flags else ["--device", "cpu"]
        if name == "gpus":
            return ["--gpus", ",".join(str(g) for g in value)]
        if name == "model_type":
            return ["-m", str(value)]
        option = "--" + name.replace("_", "-")
        if value is True:
            return [option]
        if value is False:
            return ["--no-" + option[2:]]
        return [option, str(value)]

    @staticmethod
    def _describe(options: dict) -> str:
        return ", ".join(f"{k}={v}" for k, v in options.items())

    def environment(self, options: dict) -> dict:
        """Variables the command needs on top of the harness's own (weights' folders, package paths)."""
        return {}

    def read_run(self, outdir: Path, exit_code: int, started_at: float, ended_at: float) -> dict | None:
        """OUTDIR/run.json (vnp-run/1), or None when the command wrote none."""
        path = outdir / "run.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())

    def output_files(self, outdir: Path) -> tuple[Path | None, Path | None]:
        """(prediction_results.txt, prediction_results_highestscore.csv): in OUTDIR or the fork's *_merged/."""
        found = []
        for name in (RESULTS, CONSENSUS):
            candidates = [outdir / name, *sorted(outdir.glob(f"*_merged/{name}"))]
            found.append(next((p for p in candidates if p.exists()), None))
        return found[0], found[1]


class CliTarget(Target):
    def read_run(self, outdir: Path, exit_code: int, started_at: float, ended_at: float) -> dict | None:
        run = super().read_run(outdir, exit_code, started_at, ended_at)
        if run is not None:
            return run
        state = outdir / ".checkpoints" / "pipeline_state.json"
        stages = stages_from_pipeline_state(json.loads(state.read_text())) if state.exists() else []
        return observed_run({"name": self.command[0], "version": None, "commit": None}, stages, exit_code,
                            started_at, ended_at)


def observed_run(tool: dict, stages: list[dict], exit_code: int, started_at: float, ended_at: float) -> dict:
    """A vnp-run/1-shaped run record for a command that writes none: what the harness saw from outside."""
    return {
        "schema": "vnp-run/1", "tool": tool,
        "argv": None, "host": None, "config": None, "synthetic_weights": None, "input": None, "output": None,
        "stages": stages, "workers": [], "model_load_seconds": None,
        "started_at": started_at, "ended_at": ended_at, "wall_seconds": ended_at - started_at,
        "resumed": None, "exit": {"status": "ok" if exit_code == 0 else "failed", "code": exit_code, "error": None},
    }


class OriginalTarget(Target):
    """VirNucPro's original, `python prediction.py INPUT 300|500 MODEL`, from a clone (peer_programs.py).

    It takes no options and writes beside its input, so the target links the input into OUTDIR and finds the
    results in OUTDIR/reads_merged/. The weights are the kit's: fair-esm and transformers find them through
    TORCH_HOME and HF_HOME, the classifier is the kit's pickled module. It uses one GPU (cuda:0), chosen with
    CUDA_VISIBLE_DEVICES, and computes in fp32; anything else it cannot do is `Unsupported`. Its stage times
    are the times it wrote each stage's last file (it reports none): preprocess (the kept frames), DNABERT-S
    and ESM-2 (their feature files: model loads included, once per 10,000 frames as it does), merge, classify,
    consensus.
    """

    STEM = "reads"  # the linked input's name: the original cuts paths at their first ".fa"
    IGNORED = ("model_size", "weights_kit", "quiet")  # the kit decides the models; nothing to silence

    def __init__(self, clone: Path, kit: weights_kit.Kit, site: Path | None = None):
        super().__init__("original", [sys.executable, str(clone / "prediction.py")])
        self.clone, self.kit, self.site = clone, kit, site

    @property
    def flags(self) -> frozenset[str]:
        return frozenset()

    def argv(self, input_path: Path, outdir: Path, options: dict) -> list[str]:
        settings = self._settings(options)
        if ".fa" in str(outdir):
            raise Unsupported(f"the original cuts paths at their first '.fa', and {outdir} has one")
        outdir.mkdir(parents=True, exist_ok=True)
        staged = outdir / f"{self.STEM}.fa"
        staged.unlink(missing_ok=True)
        staged.symlink_to(Path(input_path).resolve())
        model_type = settings["model_type"]
        return [*self.command, str(staged), str(model_type), str(self.kit.classifier(model_type))]

    def _settings(self, options: dict) -> dict:
        settings = {"model_type": 500, "devices": None, "threads": None}
        for name, value in options.items():
            if value is None or value is False or name in self.IGNORED:
                continue
            if name == "model_type":
                settings["model_type"] = int(value)
            elif name == "gpus" and len(value) == 1:
                settings["devices"] = str(value[0])
            elif name == "cpu":
                settings["devices"] = ""  # no GPU visible: it runs on the CPU
            elif name == "threads":
                settings["threads"] = str(value)
            elif not (name == "precision" and value == "fp32"):
                raise Unsupported(f"the original cannot run with {name}={value} (one GPU, fp32, no options)")
        return settings

    def environment(self, options: dict) -> dict:
        settings = self._settings(options)
        env = {**self.kit.environment(), "PYTHONPATH": peer_programs.python_path(self.site)}
        if settings["devices"] is not None:
            env["CUDA_VISIBLE_DEVICES"] = settings["devices"]
        if settings["threads"]:
            env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = settings["threads"]
        return env

    def setup(self) -> dict:
        return {**peer_programs.describe(self.clone), "kit": str(self.kit.root),
                "packages": peer_programs.packages(self.site), "environment": self.environment({})}

    def read_run(self, outdir: Path, exit_code: int, started_at: float, ended_at: float) -> dict | None:
        stem, merged = self.STEM, outdir / f"{self.STEM}_merged"
        last_files = (("preprocess", [outdir / f"{stem}_identified_protein.faa"]),
                      ("dnabert", list(outdir.glob(f"{stem}_nucleotide/*_DNABERT_S.pt"))),
                      ("esm2", list(outdir.glob(f"{stem}_protein/*_ESM.pt"))),
                      ("merge", list(merged.glob("*_merged.pt"))),
                      ("classify", [merged / RESULTS]), ("consensus", [merged / CONSENSUS]))
        stages, start = [], started_at
        for name, files in last_files:
            written = [p.stat().st_mtime for p in files if p.exists()]
            if not written:
                break
            end = max(written)
            stages.append({"name": name, "start": start, "end": end, "seconds": end - start, "items": None,
                           "tokens": None, "devices": [], "sources": ["file times"]})
            start = end
        tool = {"name": "virnucpro-original", "version": None, "commit": peer_programs.describe(self.clone)["commit"]}
        return observed_run(tool, stages, exit_code, started_at, ended_at)


def stages_from_pipeline_state(state: dict) -> list[dict]:
    """vnp-run/1 stages (name, start, end, seconds) from the fork's .checkpoints/pipeline_state.json."""
    merged: dict[str, dict] = {}
    for source, entry in (state.get("stages") or {}).items():
        name = STATE_STAGES.get(source, source.lower())
        stage = merged.setdefault(name, {"name": name, "start": None, "end": None, "seconds": 0.0, "items": None,
                                         "tokens": None, "devices": [], "sources": []})
        stage["sources"].append(source)
        start, end = _utc_seconds(entry.get("started_at")), _utc_seconds(entry.get("completed_at"))
        if start is not None:
            stage["start"] = start if stage["start"] is None else min(stage["start"], start)
        if end is not None:
            stage["end"] = end if stage["end"] is None else max(stage["end"], end)
        seconds = entry.get("duration_seconds")
        if seconds is None and start is not None and end is not None:
            seconds = end - start
        stage["seconds"] += float(seconds or 0.0)
    return list(merged.values())


def _utc_seconds(stamp: str | None) -> float | None:
    """The fork writes datetime.utcnow().isoformat(): naive, but UTC."""
    if not stamp:
        return None
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


class ForkTarget(CliTarget):
    """The Broad Institute fork, `python -m virnucpro predict`, from a clone or installed in asv's environment.

    Its stage times are in OUTDIR/.checkpoints/pipeline_state.json, its outputs in OUTDIR/*_merged/ (CliTarget).
    The weights are the kit's (TORCH_HOME, HF_HOME; the classifier with -p); it asks before replacing an
    existing OUTDIR and has no terminal here, so every fresh run says --force. Semantic options it lacks a flag
    for are `Unsupported` (the flags its --help lists decide, so an old commit is skipped, not run otherwise);
    two are environment, as the fork reads them: `precision="fp32"` (VIRNUCPRO_DISABLE_FP16=1; by default it
    runs ESM-2 in half precision), and `flash_attention` (its FlashAttention path, which it takes with
    --parallel when `flash_attn` imports: `flash_attn_compat/` first on its path stands in for flash-attn,
    a CUDA extension an offline host cannot build).
    """

    def __init__(self, command: list[str], kit: weights_kit.Kit, site: Path | None = None, clone: Path | None = None):
        super().__init__("fork", command)
        self.kit, self.site, self.clone = kit, site, clone

    @classmethod
    def from_clone(cls, clone: Path, kit: weights_kit.Kit, site: Path | None = None) -> ForkTarget:
        return cls([sys.executable, "-m", "virnucpro", "predict"], kit, site, clone)

    def argv(self, input_path: Path, outdir: Path, options: dict) -> list[str]:
        if options.get("precision") not in (None, "fp32"):
            raise Unsupported(f"the fork chooses its own precision (fp32 only on request), not {options['precision']}")
        if options.get("flash_attention") and not options.get("parallel"):
            raise Unsupported("the fork's FlashAttention path is its --parallel one")
        if options.get("parallel") and options.get("cpu"):
            raise Unsupported("the fork's --parallel path (v2.0's packed ESM-2 workers) runs on CUDA only")
        fork = {k: v for k, v in options.items() if k not in ("model_size", "weights_kit", "precision",
                                                               "flash_attention")}
        fork["model_path"] = str(self.kit.classifier(int(options.get("model_type") or 500)))
        fork["force"] = not options.get("resume")
        return super().argv(input_path, outdir, fork)

    def environment(self, options: dict) -> dict:
        shim = Path(__file__).with_name("flash_attn_compat") if options.get("flash_attention") else None
        env = {**self.kit.environment(), "PYTHONPATH": peer_programs.python_path(shim, self.site, self.clone)}
        if options.get("precision") == "fp32":
            env["VIRNUCPRO_DISABLE_FP16"] = "1"
        return env

    def setup(self) -> dict:
        where = peer_programs.describe(self.clone or self._installed_source())
        if not self.clone:
            where["installed"] = " ".join(self.command)
        return {**where, "kit": str(self.kit.root), "packages": peer_programs.packages(self.site),
                "environment": self.environment({})}


    @staticmethod
    def _installed_source() -> Path:
        """The source tree of the fork installed in this environment (found, not imported)."""
        spec = importlib.util.find_spec("virnucpro")
        return Path(spec.origin).resolve().parents[1] if spec and spec.origin else Path.cwd()


def for_program(program: str, scale) -> Target:
    """The target of a run: "" the command under test, or one of VirNucPro's programs from its clone
    (`peer_programs.Missing` when it is not here)."""
    if not program:
        return current()
    if program == "original":
        return OriginalTarget(peer_programs.clone("original"), peer_programs.kit(scale), peer_programs.site())
    if program == "fork":
        return ForkTarget.from_clone(peer_programs.clone("fork"), peer_programs.kit(scale), peer_programs.site())
    raise ValueError(f"unknown program {program!r}")


def current() -> Target:
    """`fork` when VNP_BENCH_TARGET=fork (the fork installed in this Python's environment: its asv configuration,
    scripts/fork_bench.sh), `cli` when VNP_BENCH_COMMAND names a command, else `vnp` from this environment."""
    if os.environ.get("VNP_BENCH_TARGET") == "fork":
        from benchmarks.harness import scale

        return ForkTarget([sys.executable, "-m", "virnucpro", "predict"], peer_programs.kit(scale.current()),
                          peer_programs.site())
    command = os.environ.get("VNP_BENCH_COMMAND")
    if command:
        return CliTarget("cli", shlex.split(command))
    return Target("vnp", [sys.executable, "-m", "vnp", "predict"])
