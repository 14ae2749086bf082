"""A peer side by side: the same frames embedded by `vnp embed esm2` and by transformers' `EsmModel`.

Both sides get the same random weights: a transformers `EsmModel` (the tiny ESM-2 shape at the ci scale,
the 3B one otherwise) seeded, saved once with `save_pretrained` (safetensors) and handed to vnp through
`--weights`; the frames are `commands.py`'s (the one read generator, the original rules' kept frames).
Devices and precision: fp32 on the CPU at the ci scale, bf16 on the first GPU otherwise.

The transformers side is what a user would write: `EsmTokenizer` and `EsmModel.from_pretrained` with SDPA
attention, frames sorted by length into padded batches, the mean over each frame's residues (BOS, EOS and
padding left out: vnp's pooling), the batch size swept once and the fastest kept.

Fairness is whole job against whole job, both in this process: vnp's `embed` command reads the FASTA,
builds and loads its model, embeds and writes a file, so the transformers job does the same (read, load
tokenizer and model, embed, write). `time_embed` is asv's own clock on each job. asv cannot divide one
benchmark's result by another's, so the per-token costs and the ratio are tracked from `setup_cache`'s
own timing of the same two jobs (best of two each, after a device warm-up), and the agreement between the
two embeddings from the same runs; a pooled cosine below 0.9999 on any frame fails every benchmark here, and
each job asv times is held to the peer's embeddings again in `teardown`.

transformers is an optional dependency of the benchmarks: without it (or with a vnp too old for
`--weights`) every benchmark here is n/a. Nothing here imports vnp: it runs through its command line.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.commands import EMBED_READS, _cached, frames_of, inputs_dir
from benchmarks.harness.inprocess import require, run_vnp
from benchmarks.harness.suite import SCALE

IMPLEMENTATIONS = ["vnp", "vnp-compiled", "transformers"]  # vnp-compiled: `vnp embed --compile`
SEED = 0
MAX_RESIDUES = 1022  # ESM-2's truncation (1024 tokens with BOS and EOS), as vnp applies it
MIN_COSINE = 0.9999
BATCH_SIZES = (128, 256, 512, 1024) if SCALE.on_gpu else (16, 64, 256)
# fair-esm's 33-token alphabet in id order: what EsmTokenizer's vocab.txt lists for every ESM-2.
ESM_ALPHABET = ("<cls>", "<pad>", "<eos>", "<unk>", *"LAGVSERTIDPKQNFYMHWC", *"XBUZO", ".", "-",
                "<null_1>", "<mask>")
# (layers, hidden, heads): vnp's tiny ESM-2 at the ci scale, the published 3B otherwise.
SHAPE = (36, 2560, 40) if SCALE.on_gpu else (2, 64, 4)


def _device_and_dtype():
    import torch

    return ("cuda", torch.bfloat16) if SCALE.on_gpu else ("cpu", torch.float32)


def weights_dir() -> Path:
    """A transformers folder (config.json, model.safetensors, vocab.txt) of seeded random ESM-2 weights."""
    layers, hidden, heads = SHAPE

    def make(target: Path) -> None:
        import torch
        from transformers import EsmConfig, EsmModel
        from transformers.utils.logging import disable_progress_bar

        disable_progress_bar()
        config = EsmConfig(vocab_size=len(ESM_ALPHABET), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=heads, intermediate_size=4 * hidden, max_position_embeddings=1026,
                           position_embedding_type="rotary", token_dropout=True, emb_layer_norm_before=False,
                           layer_norm_eps=1e-5, pad_token_id=1, mask_token_id=32, hidden_act="gelu")
        device, dtype = _device_and_dtype()
        torch.manual_seed(SEED)
        with torch.device(device):  # the 3B model's random init takes minutes on the CPU
            model = EsmModel(config, add_pooling_layer=False)
        model.to(dtype).save_pretrained(target)  # bf16 at gpu scales: both sides run in it, half the bytes
        (target / "vocab.txt").write_text("\n".join(ESM_ALPHABET) + "\n")

    return _cached(inputs_dir() / f"peers-esm2-{layers}x{hidden}x{heads}-s{SEED}", make)


def read_proteins(path: str) -> list[str]:
    from Bio.SeqIO.FastaIO import SimpleFastaParser

    with open(path) as handle:
        return [sequence.upper()[:MAX_RESIDUES] for _, sequence in SimpleFastaParser(handle)]


def load_peer(weights: str):
    """(tokenizer, model) of transformers, on this scale's device and precision, with SDPA attention."""
    from transformers import EsmModel, EsmTokenizer
    from transformers.utils.logging import disable_progress_bar

    disable_progress_bar()  # its bars on stderr are noise in asv's log
    device, dtype = _device_and_dtype()
    model = EsmModel.from_pretrained(weights, dtype=dtype, attn_implementation="sdpa", add_pooling_layer=False)
    # the dtype again: transformers 4.x before 4.56 knew it only as torch_dtype, and would load fp32
    return EsmTokenizer.from_pretrained(weights), model.to(device=device, dtype=dtype).eval()


def embed_peer(tokenizer, model, proteins: list[str], batch_size: int):
    """float32 [N, E] mean residue embeddings in input order, from length-sorted padded batches."""
    import torch

    order = sorted(range(len(proteins)), key=lambda i: len(proteins[i]))
    pooled = torch.empty(len(proteins), model.config.hidden_size, device=model.device)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = torch.tensor(order[start:start + batch_size], device=model.device)
            batch = tokenizer([proteins[i] for i in rows.tolist()], padding=True, return_tensors="pt")
            batch = batch.to(model.device)
            states = model(**batch).last_hidden_state.float()
            residues = batch["attention_mask"].clone()
            eos = residues.sum(1) - 1
            residues[:, 0] = 0  # BOS
            residues[torch.arange(len(rows), device=model.device), eos] = 0
            pooled[rows] = (states * residues[..., None]).sum(1) / residues.sum(1, keepdim=True)
    return pooled.cpu()


def transformers_job(proteins: str, weights: str, batch_size: int, out: Path):
    """The transformers equal of `vnp embed`: read, load, embed, write; returns the embeddings."""
    from safetensors.torch import save_file

    sequences = read_proteins(proteins)
    tokenizer, model = load_peer(weights)
    embeddings = embed_peer(tokenizer, model, sequences, batch_size)
    save_file({"embeddings": embeddings}, str(out))
    return embeddings


def vnp_job(proteins: str, weights: str, out: Path, compiled: bool = False):
    """`vnp embed esm2` with the same weights, device and precision; returns the embeddings."""
    from safetensors.torch import load_file

    device_flags = ["--precision", "bf16"] if SCALE.on_gpu else ["--cpu", "--precision", "fp32"]
    run_vnp("embed", "esm2", proteins, "-o", str(out), "--weights", weights, *device_flags,
            *(["--compile"] if compiled else []))
    return load_file(str(out))["embeddings"]


def can_compile() -> bool:
    """Compiling is measured on the GPU only (on the CPU the job is all compile time), by a vnp that offers it."""
    try:
        require("embed", "--compile")
    except NotImplementedError:
        return False
    return SCALE.on_gpu


def _timed(job, *args):
    """(seconds, result) of job(*args), the device synchronised on both ends and emptied after."""
    import torch

    def sync():
        if SCALE.on_gpu:
            torch.cuda.synchronize()

    sync()
    started = time.perf_counter()
    result = job(*args)
    sync()
    seconds = time.perf_counter() - started
    gc.collect()
    if SCALE.on_gpu:
        torch.cuda.empty_cache()
    return seconds, result


def measure(proteins: str, weights: str, scratch: Path) -> dict:
    """Both jobs timed (best of two), the transformers batch size swept, the embeddings compared."""
    import torch
    from safetensors.torch import save_file

    torch.zeros(1, device=_device_and_dtype()[0])  # device start-up paid here, by neither job
    vnp_runs = [_timed(vnp_job, proteins, weights, scratch / "vnp.safetensors") for _ in range(2)]
    seconds = {"vnp": min(s for s, _ in vnp_runs)}
    ours = [vnp_runs[0][1]]  # every vnp job's embeddings are held to the peer's: a fast wrong job fails
    if can_compile():  # the first run fills Inductor's cache, as a user's first run on a host would
        compiled_runs = [_timed(vnp_job, proteins, weights, scratch / "vnp.safetensors", True) for _ in range(2)]
        seconds["vnp-compiled"] = min(s for s, _ in compiled_runs)
        ours.append(compiled_runs[0][1])
    sequences = read_proteins(proteins)
    tokenizer, model = load_peer(weights)
    embed_peer(tokenizer, model, sequences[:BATCH_SIZES[0]], BATCH_SIZES[0])  # warm-up, so no size pays it
    sweep = {size: _timed(embed_peer, tokenizer, model, sequences, size)[0] for size in BATCH_SIZES}
    del tokenizer, model
    batch_size = min(sweep, key=sweep.get)
    peer_runs = [_timed(transformers_job, proteins, weights, batch_size, scratch / "peer.safetensors")
                 for _ in range(2)]
    cosine = torch.cat([torch.nn.functional.cosine_similarity(e, peer_runs[0][1], dim=1) for e in ours])
    reference = weights_dir().parent / f"{weights_dir().name}-{Path(proteins).parent.name}-peer.safetensors"
    save_file({"embeddings": peer_runs[0][1].contiguous()}, str(reference))  # what asv's timed jobs are held to
    seconds["transformers"] = min(s for s, _ in peer_runs)
    return {"seconds": seconds,
            "tokens": sum(len(s) + 2 for s in sequences), "batch_size": batch_size, "sweep": sweep,
            "min_cosine": float(cosine.min()), "reference": str(reference)}


class _Peers:
    """Inputs and both jobs measured once per `asv run` (setup_cache), n/a where a side is missing."""

    version = "1"

    def setup_cache(self):
        try:
            import transformers  # noqa: F401  (only its presence is checked here)
        except ImportError:
            return {"skip": "transformers is not installed (an optional dependency of the benchmarks)"}
        try:
            require("embed", "--weights", "--precision", "--cpu", "-o")
        except NotImplementedError as error:
            return {"skip": str(error)}
        import torch

        if SCALE.on_gpu and not torch.cuda.is_available():
            return {"skip": "no CUDA device"}
        proteins, weights = str(frames_of(EMBED_READS)[1]), str(weights_dir())
        scratch = Path(tempfile.mkdtemp(prefix="vnp-bench-peers-"))
        try:
            return {"skip": None, "proteins": proteins, "weights": weights, **measure(proteins, weights, scratch)}
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    setup_cache.timeout = 3600 if SCALE.on_gpu else 600  # 3B weights made once, then six jobs and a sweep

    def setup(self, cache, *params):
        if cache["skip"]:
            raise NotImplementedError(cache["skip"])
        disagree(cache["min_cosine"])  # a measurement of wrong embeddings is no measurement: every benchmark fails


def disagree(min_cosine: float) -> None:
    if 1.0 - min_cosine > 1.0 - MIN_COSINE:
        raise AssertionError(f"vnp and transformers embeddings disagree: min cosine {min_cosine:.6f} < {MIN_COSINE}")


class PeerEmbed(_Peers):
    """Each whole job timed by asv: `vnp embed esm2` against its transformers equal, same frames and weights."""

    params = (IMPLEMENTATIONS,)
    param_names = ("implementation",)
    number = 1
    repeat = (1, 3, 600.0) if SCALE.on_gpu else (2, 3, 20.0)
    warmup_time = 0
    timeout = 1800 if SCALE.on_gpu else 300

    def teardown(self, cache, implementation):
        if not hasattr(self, "outputs"):  # setup found a side missing
            return
        try:  # asv's timed job too: its embeddings against the peer's from setup_cache
            from safetensors.torch import load_file

            out = self.outputs / "embeddings.safetensors"
            if out.is_file():
                import torch

                written, reference = (load_file(str(p))["embeddings"] for p in (out, cache["reference"]))
                disagree(float(torch.nn.functional.cosine_similarity(written, reference, dim=1).min()))
        finally:
            shutil.rmtree(self.outputs, ignore_errors=True)

    def setup(self, cache, implementation):
        super().setup(cache)
        if implementation not in cache["seconds"]:
            raise NotImplementedError(f"{implementation} not measured here (a GPU and `vnp embed --compile`)")
        self.outputs = Path(tempfile.mkdtemp(prefix="vnp-bench-peers-"))

    def time_embed(self, cache, implementation):
        out = self.outputs / "embeddings.safetensors"
        if implementation.startswith("vnp"):
            vnp_job(cache["proteins"], cache["weights"], out, compiled=implementation == "vnp-compiled")
        else:
            transformers_job(cache["proteins"], cache["weights"], cache["batch_size"], out)

    def track_seconds_per_million_tokens(self, cache, implementation):
        return cache["seconds"][implementation] / cache["tokens"] * 1e6

    track_seconds_per_million_tokens.unit = "s/Mtoken"


class PeerCompare(_Peers):
    """vnp against transformers on the same run: their time ratio and how far their embeddings differ."""

    def track_vnp_over_transformers_time(self, cache):
        """vnp's whole-job seconds over transformers': below 1 is vnp faster (a cost: growth is bad)."""
        return cache["seconds"]["vnp"] / cache["seconds"]["transformers"]

    track_vnp_over_transformers_time.unit = "ratio"

    def track_one_minus_min_cosine(self, cache):
        """1 - the lowest pooled cosine over the frames; above 1e-4 the two do not compute the same thing."""
        disagree(cache["min_cosine"])
        return 1.0 - cache["min_cosine"]

    track_one_minus_min_cosine.unit = "1 - cosine"


class PeerCompareCompiled(_Peers):
    """The same ratio for `vnp embed --compile` (n/a where compiling is not measured)."""

    def setup(self, cache):
        super().setup(cache)
        if "vnp-compiled" not in cache["seconds"]:
            raise NotImplementedError("vnp-compiled not measured here (a GPU and `vnp embed --compile`)")

    def track_compiled_vnp_over_transformers_time(self, cache):
        return cache["seconds"]["vnp-compiled"] / cache["seconds"]["transformers"]

    track_compiled_vnp_over_transformers_time.unit = "ratio"
