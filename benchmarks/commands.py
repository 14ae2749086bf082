"""The in-process commands: `vnp preprocess`, `vnp consensus` and `vnp embed`, timed by asv itself.

Each benchmark runs one whole vnp command inside this process (`harness/inprocess.py`: the command line
through runpy, never vnp's modules), so asv's own time_ and peakmem_ are the instrument; the preprocess
and consensus commands are set against the plain original rules (`harness/original.py`) doing the same
job on the same files, whole command against whole command. Inputs are fixed and seeded: reads from the
one read generator (`harness/datasets.py`), their frames found by the original rules, made-up scores.

This replaces `kernels.py`, which called vnp's internal functions and so could not run against commits
whose internals differ. Its token-budget packing benchmark is gone: packing has no command of its own,
and its cost shows in the stage timings (`stages.py`). The forward pass is now `vnp embed` on fixed
frames: tiny models on the CPU at the ci scale, the full models on the first GPU otherwise, with enough
frames that model build and CUDA start-up are a minority of the time.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import datasets, original
from benchmarks.harness.inprocess import require, run_vnp
from benchmarks.harness.suite import SCALE

READS = 20_000  # ~150-nt reads, at every scale: ~0.13 s of vnp preprocess, ~1.3 s of the original on 2 cores
EMBED_READS = 27_000 if SCALE.on_gpu else 400  # ~0.8 kept frames a read: ~21,000 frames, or ~300 on the CPU
CHUNK_SIZE = 300
IMPLEMENTATIONS = ["vnp", "original"]
_FILES: dict[str, Path] = {}  # inputs made once per process: asv repeats setup between samples


def workdir() -> Path:
    if "work" not in _FILES:
        _FILES["work"] = Path(tempfile.mkdtemp(prefix="vnp-bench-commands-"))
        atexit.register(shutil.rmtree, _FILES["work"], True)
    return _FILES["work"]


def reads_file(count: int, seed: int = 11) -> Path:
    """A FASTA of `count` generated reads (made once per process)."""
    key = f"reads{count}"
    if key not in _FILES:
        params = datasets.load_definitions()["generators"]["reads"]
        bases, lengths = datasets.reads_block(np.random.default_rng(seed), count, params)
        text = datasets.LETTERS[bases]
        path = workdir() / f"{key}.fa"
        path.write_text("".join(f">k{i}\n{text[i, :n].tobytes().decode()}\n" for i, n in enumerate(lengths.tolist())))
        _FILES[key] = path
    return _FILES[key]


def frames_of(count: int) -> tuple[Path, Path]:
    """(nucleotide, protein) FASTA of the kept frames of `count` reads, found by the original rules."""
    key = f"frames{count}"
    if key not in _FILES:
        reads = reads_file(count)
        original.preprocess_files(reads, workdir() / key, CHUNK_SIZE)
        _FILES[key] = workdir() / key
    stem = reads_file(count).stem
    return _FILES[key] / f"{stem}_identified_nucleotide.fa", _FILES[key] / f"{stem}_identified_protein.faa"


def predictions_file(count: int, seed: int = 14) -> Path:
    """A prediction_results.txt for the frames of `count` reads, with seeded made-up scores."""
    key = f"predictions{count}"
    if key not in _FILES:
        nucleotides, _ = frames_of(count)
        ids = [line[1:].rstrip("\n") for line in nucleotides.open() if line.startswith(">")]
        scores = np.random.default_rng(seed).random((len(ids), 2), dtype=np.float32)
        path = workdir() / f"{key}.txt"
        with path.open("w") as out:
            out.write("Sequence_ID\tPrediction\tscore1\tscore2\n")
            out.writelines(f"{i}\t{'virus' if b > a else 'others'}\t{a!s}\t{b!s}\n"
                           for i, (a, b) in zip(ids, scores, strict=True))  # str(float32), as scores are written
        _FILES[key] = path
    return _FILES[key]


class Preprocess:
    """`vnp preprocess` on 20,000 reads (chunks of 300), against the original rules writing the same files."""

    params = (IMPLEMENTATIONS,)
    param_names = ("implementation",)
    version = "1"
    number = 1
    repeat = (2, 5, 10.0)
    warmup_time = 0

    def setup(self, implementation):
        if implementation == "vnp":
            require("preprocess", "-o", "-m")
        self.reads = reads_file(READS)
        self.outdir = workdir() / f"preprocess-{implementation}"

    def _preprocess(self, implementation):
        if implementation == "vnp":
            run_vnp("preprocess", str(self.reads), "-o", str(self.outdir), "-m", str(CHUNK_SIZE))
        else:
            original.preprocess_files(self.reads, self.outdir, CHUNK_SIZE)

    def time_preprocess(self, implementation):
        self._preprocess(implementation)

    def peakmem_preprocess(self, implementation):
        self._preprocess(implementation)


class Consensus:
    """`vnp consensus` on the per-frame results of 20,000 reads, against the original rule."""

    params = (IMPLEMENTATIONS,)
    param_names = ("implementation",)
    version = "1"
    number = 1
    repeat = (2, 5, 10.0)
    warmup_time = 0

    def setup(self, implementation):
        if implementation == "vnp":
            require("consensus", "-o")
        self.predictions = predictions_file(READS)
        self.out = workdir() / f"consensus-{implementation}.csv"

    def _consensus(self, implementation):
        if implementation == "vnp":
            run_vnp("consensus", str(self.predictions), "-o", str(self.out))
        else:
            original.consensus_file(self.predictions, self.out)

    def time_consensus(self, implementation):
        self._consensus(implementation)

    def peakmem_consensus(self, implementation):
        self._consensus(implementation)


class Embed:
    """`vnp embed` of fixed frames: ESM-2 on the proteins, DNABERT-S on the nucleotides (random weights).

    ci scale: the tiny models on the CPU, ~300 frames; gpu scales: the full models on the first GPU,
    ~20,000 frames, each sample building the model afresh (as every command does).
    """

    params = (["esm2", "dnabert"],)
    param_names = ("model",)
    version = "1"
    number = 1
    repeat = (1, 3, 600.0) if SCALE.on_gpu else (2, 3, 20.0)  # the median drops the first, cold sample
    warmup_time = 0
    timeout = 1800 if SCALE.on_gpu else 300  # building the 3B model, then ~1M ESM tokens

    def setup(self, model):
        # Here, not at import: asv discovers the suites without torch or CUDA. Importing it before the
        # first sample keeps torch's own start-up (~2 s) out of the command's time.
        import torch

        if SCALE.on_gpu and not torch.cuda.is_available():
            raise NotImplementedError("no CUDA device")
        device_flags = ["--model-size", SCALE.model_size] + ([] if SCALE.on_gpu else ["--cpu"])
        require("embed", *[flag for flag in device_flags if flag.startswith("--")])
        nucleotides, proteins = frames_of(EMBED_READS)
        self.argv = ["embed", model, str(proteins if model == "esm2" else nucleotides),
                     "-o", str(workdir() / f"embed-{model}.safetensors"), *device_flags]

    def time_embed(self, model):
        run_vnp(*self.argv)
