"""The in-process commands: `vnp preprocess`, `vnp consensus` and `vnp embed`, timed by asv itself.

Each benchmark runs one whole vnp command inside this process (`harness/inprocess.py`: the command line
through runpy, never vnp's modules), so asv's own time_ and peakmem_ are the instrument; the preprocess
and consensus commands are set against the plain original rules (`harness/original.py`) doing the same
job on the same files, whole command against whole command. Inputs are fixed and seeded: reads from the
one read generator (`harness/datasets.py`), their frames found by the original rules, made-up scores.

The module is named for what it measures, whole commands. It replaces the first `kernels.py` (whose
`ChunkTranslate`, `Forward` and `Packing` results stay in results/; the name now holds the bottleneck suite), which
called vnp's internal functions and so could not run against commits whose internals differ. Its token-budget packing
benchmark is gone: packing has no command of its own, and its cost shows in the stage timings
(`stages.py`). The forward pass is now `vnp embed` on fixed frames: tiny models on the CPU at the ci
scale, the full models on the first GPU otherwise, with enough frames that model build and CUDA start-up
are a minority of the time. None of these commands has a `--threads` option: `vnp embed` on the CPU uses
torch's default thread count.
"""

from __future__ import annotations

import os
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


def inputs_dir() -> Path:
    """Where the fixed inputs are kept, with the datasets: made by the first run, reused by later ones."""
    return datasets.cache_dir() / f"commands-g{datasets.GENERATOR_VERSION}"


def _cached(path: Path, make) -> Path:
    """`path`, made by make(target) on first use and renamed into place whole, so a reader never sees half."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        make(scratch / path.name)
        os.replace(scratch / path.name, path)
    except OSError:
        if not path.exists():  # else another process made it meanwhile
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def reads_file(count: int, seed: int = 11) -> Path:
    """A FASTA of `count` reads from the one read generator."""
    def make(target: Path) -> None:
        params = datasets.load_definitions()["generators"]["reads"]
        bases, lengths = datasets.reads_block(np.random.default_rng(seed), count, params)
        text = datasets.LETTERS[bases]
        target.write_text("".join(f">k{i}\n{text[i, :n].tobytes().decode()}\n" for i, n in enumerate(lengths.tolist())))

    return _cached(inputs_dir() / f"reads{count}-s{seed}.fa", make)


def frames_of(count: int) -> tuple[Path, Path]:
    """(nucleotide, protein) FASTA of the kept frames of `count` reads, found by the original rules."""
    reads = reads_file(count)
    folder = _cached(inputs_dir() / f"frames-{reads.stem}", lambda target: original.preprocess_files(
        reads, target, CHUNK_SIZE))
    return folder / f"{reads.stem}_identified_nucleotide.fa", folder / f"{reads.stem}_identified_protein.faa"


def predictions_file(count: int, seed: int = 14) -> Path:
    """A prediction_results.txt for the frames of `count` reads, with seeded made-up scores."""
    def make(target: Path) -> None:
        nucleotides, _ = frames_of(count)
        ids = [line[1:].rstrip("\n") for line in nucleotides.open() if line.startswith(">")]
        scores = np.random.default_rng(seed).random((len(ids), 2), dtype=np.float32)
        with target.open("w") as out:
            out.write("Sequence_ID\tPrediction\tscore1\tscore2\n")
            out.writelines(f"{i}\t{'virus' if b > a else 'others'}\t{a!s}\t{b!s}\n"
                           for i, (a, b) in zip(ids, scores, strict=True))  # str(float32), as scores are written

    return _cached(inputs_dir() / f"predictions-reads{count}-s{seed}.txt", make)


class _Outputs:
    """A scratch folder per sample for what the command writes, checked and removed after it.

    The inputs come from each class's setup_cache, which asv runs once in a process of its own before any
    sample: making them does not count in a peakmem_ figure, and the arguments are their paths. Every
    sample's output is checked against the original rules' after the clock stops (`check`): a command that
    wrote less, or wrong, would otherwise read as faster. A failed check fails the benchmark.
    """

    def check(self, inputs, *params) -> None:
        """Raise if what the sample wrote is not what it should be."""

    def make_outputs(self) -> Path:
        self.outputs = Path(tempfile.mkdtemp(prefix="vnp-bench-commands-"))
        return self.outputs

    def teardown(self, inputs, *params):
        if not hasattr(self, "outputs"):  # setup found the command missing
            return
        try:
            self.check(inputs, *params)
        finally:
            shutil.rmtree(self.outputs, ignore_errors=True)


def same_bytes(written: Path, expected: Path) -> None:
    if not written.is_file() or written.read_bytes() != expected.read_bytes():
        raise RuntimeError(f"{written.name} differs from the original rules' {expected}")


class _AgainstOriginal(_Outputs):
    """A vnp command against the original rules doing the same job: one timed run a sample."""

    params = (IMPLEMENTATIONS,)
    param_names = ("implementation",)
    version = "1"
    number = 1
    repeat = (2, 5, 10.0)
    warmup_time = 0


class Preprocess(_AgainstOriginal):
    """`vnp preprocess` on 20,000 reads (chunks of 300), against the original rules writing the same files."""

    def setup_cache(self):
        return str(reads_file(READS))

    def setup(self, reads, implementation):
        if implementation == "vnp":
            require("preprocess", "-o", "-m")
        self.reads = reads
        self.outdir = self.make_outputs() / "preprocess"

    def check(self, reads, implementation):
        nucleotides, proteins = frames_of(READS)  # the original rules' files, made once and cached
        stem = Path(reads).stem
        for name in (f"{stem}_chunked{CHUNK_SIZE}.fa", nucleotides.name, proteins.name):
            same_bytes(self.outdir / name, nucleotides.parent / name)

    def _preprocess(self, implementation):
        if implementation == "vnp":
            run_vnp("preprocess", self.reads, "-o", str(self.outdir), "-m", str(CHUNK_SIZE))
        else:
            original.preprocess_files(self.reads, self.outdir, CHUNK_SIZE)

    def time_preprocess(self, reads, implementation):
        self._preprocess(implementation)

    def peakmem_preprocess(self, reads, implementation):
        self._preprocess(implementation)


class Consensus(_AgainstOriginal):
    """`vnp consensus` on the per-frame results of 20,000 reads, against the original rule."""

    def setup_cache(self):
        return str(predictions_file(READS))

    def setup(self, predictions, implementation):
        if implementation == "vnp":
            require("consensus", "-o")
        self.predictions = predictions
        self.out = self.make_outputs() / "highestscore.csv"

    def check(self, predictions, implementation):
        expected = _cached(inputs_dir() / f"{Path(predictions).stem}-highestscore.csv",
                           lambda target: original.consensus_file(predictions, target))
        same_bytes(self.out, expected)

    def _consensus(self, implementation):
        if implementation == "vnp":
            run_vnp("consensus", self.predictions, "-o", str(self.out))
        else:
            original.consensus_file(self.predictions, self.out)

    def time_consensus(self, predictions, implementation):
        self._consensus(implementation)

    def peakmem_consensus(self, predictions, implementation):
        self._consensus(implementation)


class Embed(_Outputs):
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

    def setup_cache(self):
        nucleotides, proteins = frames_of(EMBED_READS)
        return {"esm2": str(proteins), "dnabert": str(nucleotides)}

    def setup(self, frames, model):
        # Here, not at import: asv discovers the suites without torch or CUDA. Importing it before the
        # first sample keeps torch's own start-up (~2 s) out of the command's time.
        import torch

        if SCALE.on_gpu and not torch.cuda.is_available():
            raise NotImplementedError("no CUDA device")
        device_flags = ["--model-size", SCALE.model_size] + ([] if SCALE.on_gpu else ["--cpu"])
        require("embed", *[flag for flag in device_flags if flag.startswith("--")])
        self.embeddings = self.make_outputs() / "embeddings.safetensors"
        self.argv = ["embed", model, frames[model], "-o", str(self.embeddings), *device_flags]

    def check(self, frames, model):
        from safetensors import safe_open

        expected = sum(line.startswith(">") for line in open(frames[model]))
        with safe_open(str(self.embeddings), "np") as written:
            rows = written.get_slice("embeddings").get_shape()[0]
        if rows != expected:
            raise RuntimeError(f"vnp embed wrote {rows} embeddings for {expected} frames")

    def time_embed(self, frames, model):
        run_vnp(*self.argv)
