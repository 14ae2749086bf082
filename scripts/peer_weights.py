"""Write one weights kit: the same seeded random weights for vnp, VirNucPro's original and the Broad fork.

    python -m scripts.peer_weights KIT --size full --dnabert-code DIR      # ESM-2 3B + DNABERT-S (~6 GB, ~1 min)
    python -m scripts.peer_weights KIT --size small --dnabert-code DIR     # 36 narrow ESM-2 layers: CPU tests

DIR holds DNABERT-S's model code (bert_layers.py, bert_padding.py, configuration_bert.py, as its Hugging
Face repository has them); VNP_PEER_DNABERT_CODE may name it instead. Prints the environment the original
and the fork need to find the weights offline, and vnp's options. What a kit holds:
benchmarks/harness/weights_kit.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from benchmarks.harness import weights_kit


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kit", help="the folder to write (replaced once the new kit is complete)")
    parser.add_argument("--size", choices=sorted(weights_kit.ESM_SHAPES), default="full",
                        help="full: the published shapes; small: 36 narrow ESM-2 layers for CPU tests (default full)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every tensor (default 0)")
    parser.add_argument("--dnabert-code", help="folder with DNABERT-S's model code (default $VNP_PEER_DNABERT_CODE)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        kit = weights_kit.write(args.kit, args.size, args.seed, args.dnabert_code)
    except weights_kit.KitError as error:
        print(f"peer_weights: {error}", file=sys.stderr)
        return 2
    print(f"peer_weights: {kit.size} kit (seed {kit.seed}) in {kit.root} ({time.perf_counter() - started:.0f} s)")
    print("# the original and the fork find their weights with:")
    print("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in kit.environment().items()))
    print(f"# the original: python prediction.py INPUT.fa 300 {shlex.quote(str(kit.classifier(300)))}")
    flags = [f"--{name.replace('_', '-')}" + ("" if value is True else f" {shlex.quote(value)}")
             for name, value in kit.vnp_options(300).items()]
    print("# vnp: vnp predict INPUT.fa -o OUT -m 300 " + " ".join(flags))
    return 0


if __name__ == "__main__":
    sys.exit(main())
