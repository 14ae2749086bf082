"""The `vnp` command (contract 1 with the benchmark harness: options only ever get added).

Every failure the user can act on ends as one line on stderr and an exit code from docs/reliability.md;
anything else (a bug) keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from vnp import __version__
from vnp.engine.devices import PRECISIONS
from vnp.errors import Terminated, VnpError, exit_code, is_system_error, one_line
from vnp.kernels import KERNELS
from vnp.options import ATTENTIONS, MODEL_SIZES, MODEL_TYPES

PREDICT_EPILOG = """\
outputs (in OUTDIR): prediction_results.txt (one row per kept frame), prediction_results_highestscore.csv
(one row per chunk with a kept frame, tab-separated like the original's), run.json (the run record).
Without weight files, seeded random weights of the exact architectures are used: speed and memory are
real, labels are not (run.json says synthetic_weights: true).

examples:
  vnp predict reads.fa -o out -m 300                       # all visible GPUs, or the CPU
  vnp predict reads.fa -o out --gpus 0,1 --precision bf16  # two GPUs
  vnp predict reads.fa -o out --variant baseline           # the original's way: fp32, math, padded, reloads
  vnp predict reads.fa -o out --resume                     # continue a killed run
  vnp predict reads.fa -o out --force                      # replace earlier results once the new ones are done

exit codes: 0 ok, 1 bad option or internal error, 2 bad input, 3 bad weights, 4 OUTDIR unusable,
5 the system refused a read or write (disk full, read-only), 130 interrupted, 143 terminated.
"""


def _add_predict_options(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", help="input FASTA (plain or gzip)")
    add("-o", "--output", required=True, metavar="OUTDIR", help="output directory")
    add("-m", "--model-type", type=int, choices=MODEL_TYPES, default=500,
        help="which VirNucPro model, which is also the chunk size in bases (default 500)")
    add("--model-size", choices=MODEL_SIZES, default="full",
        help="full: ESM-2 3B + DNABERT-S; tiny: small test configurations (seconds on a CPU); a file given "
             "with --esm-weights brings its own ESM-2 shape")
    devices = parser.add_argument_group("devices")
    devices.add_argument("--gpus", metavar="0,1,...", help="GPU indices to use (default: all visible GPUs)")
    devices.add_argument("--parallel", action=argparse.BooleanOptionalAction, default=None,
                         help="use all visible GPUs (default); --no-parallel uses only the first")
    devices.add_argument("--cpu", action="store_true", help="run on the CPU even when GPUs are visible")
    devices.add_argument("--cpu-workers", type=int, default=1, metavar="N",
                         help="with --cpu (or no GPU): N worker processes, as with N GPUs (tests the multi-GPU path)")
    devices.add_argument("--threads", type=int, metavar="N",
                         help="CPU threads for torch, and processes for preprocessing a large plain FASTA "
                              "(default: all cores)")
    speed = parser.add_argument_group("optimisations (defaults: --variant all)")
    speed.add_argument("--variant", choices=("baseline", "all"),
                       help="baseline: the original's way (fp32, math attention, padded batches, models "
                            "reloaded per part, one GPU); all: every optimisation on")
    speed.add_argument("--precision", choices=PRECISIONS,
                       help="auto (default): bf16 on Ampere and newer, fp16 on older GPUs, fp32 on the CPU; "
                            "fp8: ESM-2's linears in fp8 (Ada/Hopper) if a check on 2,048 of the run's "
                            "frames against bf16 passes, else bf16 (run.json says which)")
    speed.add_argument("--compile", action="store_true",
                       help="compile the models' layers for fixed token counts (torch.compile; the first "
                            "batches of each size pay the compile, cached in the weights folder's inductor/)")
    speed.add_argument("--kernels", choices=KERNELS, default="eager",
                       help="eager (default): the models' plain torch code; fused: Triton kernels for the work "
                            "between the GEMMs (rotary, packed attention, add + LayerNorm, GELU), on a GPU, "
                            "checked against eager on a test batch at load (run.json says which ran)")
    speed.add_argument("--attention", choices=ATTENTIONS,
                       help="math: plain reference; sdpa (default): fused kernels per exact-length bucket; "
                            "varlen: packed flash attention for ESM-2 (torch >= 2.10, GPU)")
    speed.add_argument("--packing", action=argparse.BooleanOptionalAction, default=None,
                       help="run the GEMMs on packed tokens (default) or on padded batches")
    speed.add_argument("--persistent-models", action=argparse.BooleanOptionalAction, default=None,
                       help="load the models once per worker (default) or once per part, as the original does")
    speed.add_argument("--token-budget", type=int, metavar="N",
                       help="tokens per batch (default: sized from free GPU memory)")
    speed.add_argument("--records-per-part", type=int, default=10000, metavar="N",
                       help="frames per part, the unit of model reload and resume (default 10000)")
    speed.add_argument("--expandable-segments", action="store_true",
                       help="PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True in the workers")
    speed.add_argument("--max-memory-fraction", type=float, metavar="F",
                       help="cap the share of each GPU's memory torch may use (provokes OOM back-off)")
    runs = parser.add_argument_group("runs")
    runs.add_argument("--resume", action="store_true",
                      help="continue a killed run in OUTDIR, redoing only unfinished parts")
    runs.add_argument("-f", "--force", action="store_true",
                      help="replace the results of an earlier run in OUTDIR (only once the new ones are complete)")
    runs.add_argument("-k", "--keep-intermediate", action="store_true",
                      help="also write the original's chunked, nucleotide and protein FASTA files")
    runs.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    weights = parser.add_argument_group("weights (default: seeded random weights)")
    weights.add_argument("--esm-weights", metavar="FILE", help="ESM-2 weights: fair-esm .pt, HF .bin or safetensors")
    weights.add_argument("--dnabert-dir", metavar="DIR", help="DNABERT-S folder (config.json, weights, tokenizer.json)")
    weights.add_argument("--classifier", metavar="FILE", help="MLP state dict (.pt) or safetensors")
    weights.add_argument("--weights", metavar="DIR",
                         help="all three from a folder written by `vnp weights fetch` (default for --model-size "
                              "full: the fetch's default folder, when it holds them)")
    weights.add_argument("--trust-pickle", action="store_true",
                         help="allow unpickling the fair-esm .pt config (only for files you trust)")
    # Test hook: run the parallel preprocessing and writing from this input size (bytes, rows); 0: always.
    parser.add_argument("--parallel-from", type=int, metavar="N", help=argparse.SUPPRESS)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with ``only``, the same top level with that one subcommand.

    `main` builds only what it will run when that is `preprocess`: the other subcommands' options import
    the weight fetching (http, ssl, email: ~25 ms), a fifth of the whole command on a small input.
    """
    parser = argparse.ArgumentParser(prog="vnp", description="VirNucPro inference, fast and faithful.")
    parser.add_argument("--version", action="version", version=f"vnp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if only == "preprocess":
        _add_preprocess_command(commands)
        return parser

    predict = commands.add_parser("predict", help="classify reads as viral or not", epilog=PREDICT_EPILOG,
                                  formatter_class=argparse.RawDescriptionHelpFormatter,
                                  description="Chunk, translate, embed (DNABERT-S + ESM-2), classify.")
    _add_predict_options(predict)
    _add_preprocess_command(commands)

    consensus = commands.add_parser("consensus", help="per-chunk calls from a per-frame prediction_results.txt")
    consensus.add_argument("predictions", help="prediction_results.txt")
    consensus.add_argument("-o", "--output", metavar="OUT.csv",
                           help="default: prediction_results_highestscore.csv beside the input")

    embed = commands.add_parser("embed", help="per-record embeddings as safetensors (IDs + float32 matrix)")
    embed.add_argument("model", choices=("esm2", "dnabert"))
    embed.add_argument("input", help="FASTA of proteins (esm2) or nucleotides (dnabert)")
    embed.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    embed.add_argument("--model-size", choices=MODEL_SIZES, default="full")
    embed.add_argument("--weights", metavar="PATH", help="ESM-2 file or DNABERT-S folder (default: random)")
    embed.add_argument("--trust-pickle", action="store_true")
    embed.add_argument("--cpu", action="store_true")
    # no fp8 here: its fidelity check needs the classifier's calls, which embed does not make
    embed.add_argument("--precision", choices=[p for p in PRECISIONS if p != "fp8"], default="auto")
    embed.add_argument("--token-budget", type=int, metavar="N")
    embed.add_argument("--compile", action="store_true", help="compiled layers, as `vnp predict --compile`")

    profile = commands.add_parser("profile", help="one packed batch under torch's profiler, and its GEMMs alone (JSON)",
                                  description="Profile one packed batch shaped like the pipeline's through one "
                                              "model with seeded random weights: per-kernel device time (CPU "
                                              "operators on the CPU) and the same shapes' GEMM-only time.")
    profile.add_argument("model", choices=("esm2", "dnabert"))
    profile.add_argument("--out", required=True, metavar="FILE.json")
    profile.add_argument("--model-size", choices=MODEL_SIZES, default="full")
    profile.add_argument("--tokens", type=int, default=65536, metavar="N",
                         help="tokens in the batch (default 65536: the budget the worker settles on for both models "
                              "on an 80-140 GB card)")
    profile.add_argument("--frame-lengths", metavar="MIN-MAX",
                         help="token lengths of the frames, drawn uniformly (default: esm2 51-52, dnabert 22-46, "
                              "like the pipeline's 150-nt reads)")
    profile.add_argument("--precision", choices=[p for p in PRECISIONS if p != "fp8"], default="auto")
    profile.add_argument("--kernels", choices=KERNELS, default="eager", help="as `vnp predict --kernels`")
    profile.add_argument("--attention", choices=ATTENTIONS, default="sdpa", help="as `vnp predict --attention`")
    profile.add_argument("--repeats", type=int, default=3, metavar="N", help="timed passes (default 3)")
    profile.add_argument("--seed", type=int, default=0)
    profile.add_argument("--cpu", action="store_true")

    convert = commands.add_parser("convert-weights",
                                  help="turn the original's pickled 300_model.pth/500_model.pth into safetensors")
    convert.add_argument("source", help="the pickled classifier")
    convert.add_argument("destination", help="output .safetensors")
    convert.add_argument("--trust", action="store_true",
                         help="required: unpickling runs code from the file, do it only for files you trust")
    from vnp.fetch import add_weights_command

    add_weights_command(commands)
    return parser


def _add_preprocess_command(commands) -> None:
    preprocess = commands.add_parser("preprocess", help="write the original's chunked and six-frame FASTA files")
    preprocess.add_argument("input", help="input FASTA (plain or gzip)")
    preprocess.add_argument("-o", "--output", required=True, metavar="OUTDIR")
    preprocess.add_argument("-m", "--model-type", type=int, choices=MODEL_TYPES, default=500, help="chunk size")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(only="preprocess" if argv[:1] == ["preprocess"] else None).parse_args(argv)
    try:
        return _run(args, argv)
    except VnpError as error:
        print(f"vnp: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as error:
        print("vnp: interrupted", file=sys.stderr)
        return exit_code(error)
    except Terminated as error:
        print("vnp: terminated", file=sys.stderr)
        return error.exit_code
    except OSError as error:  # disk full, read-only, no permission: the file and the system's reason
        if not is_system_error(error):
            raise
        print(f"vnp: error: {one_line(error)}", file=sys.stderr)
        return exit_code(error)


def _run(args, argv: list[str]) -> int:
    if args.command == "predict":
        from vnp.fetch import apply_weights_dir
        from vnp.options import PredictOptions
        from vnp.predict import run

        apply_weights_dir(args)
        return run(PredictOptions.from_args(args, argv))
    if args.command == "weights":
        from vnp.fetch import run_weights_command

        return run_weights_command(args)
    if args.command == "preprocess":
        from vnp.preprocess import preprocess_files

        composition = preprocess_files(args.input, args.output, args.model_type)
        print(f"vnp: {composition.reads} reads -> {composition.chunks} chunks -> {composition.frames} kept frames",
              file=sys.stderr)
        return 0
    if args.command == "consensus":
        from vnp.consensus import consensus_file

        rows = consensus_file(args.predictions, args.output)
        print(f"vnp: wrote {rows} chunk calls", file=sys.stderr)
        return 0
    if args.command == "embed":
        from vnp.embed import run as run_embed

        return run_embed(args)
    if args.command == "profile":
        from vnp.profile import run as run_profile

        return run_profile(args)
    if args.command == "convert-weights":
        from vnp.models.weights import convert_classifier

        convert_classifier(args.source, args.destination, trust=args.trust)
        return 0
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
