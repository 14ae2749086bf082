"""One row per sample from its `vnp predict` output directory: what went in, what came out, and whether they agree.

    python cohort_summary.py -o cohort_summary.tsv --gpu-records OUTDIR/logs OUTDIR/sample1 OUTDIR/sample2 ...

The sample is the directory's name. Where it ran: its host (from run.json) and the CUDA_VISIBLE_DEVICES its run
had, which the workflow's gpu_slot.py wrote to GPU_RECORDS/<sample>.gpus. "validated" is checked here, from the
files themselves, not taken from vnp: the run ended ok, every frame counted on the way in has a row in
prediction_results.txt, and every chunk with a frame has a row in prediction_results_highestscore.csv.
"""

import argparse
import csv
import json
from pathlib import Path

COLUMNS = ("sample", "reads", "frames", "chunks_called_viral", "wall_seconds", "gpus", "host", "gpu_ids", "validated")


def rows_after_header(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle, delimiter="\t"))[1:]  # the original's writer quotes IDs like a CSV


def summarise(sample_dir: Path, gpu_records: Path) -> dict:
    record = json.loads((sample_dir / "run.json").read_text())
    frames_out = rows_after_header(sample_dir / "prediction_results.txt")
    calls = rows_after_header(sample_dir / "prediction_results_highestscore.csv")
    counted = record["input"]
    validated = (record["exit"]["status"] == "ok" and counted["frames"] == len(frames_out)
                 and counted["chunks_with_frame"] == len(calls))
    return {
        "sample": sample_dir.name,
        "reads": counted["reads"],
        "frames": counted["frames"],
        "chunks_called_viral": sum(row[1] == "True" for row in calls),
        "wall_seconds": f"{record['wall_seconds']:.1f}",
        "gpus": sum(device != "cpu" for device in record["config"]["devices"]),
        "host": record["host"]["hostname"],
        "gpu_ids": (gpu_records / f"{sample_dir.name}.gpus").read_text().strip(),
        "validated": str(validated).lower(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="the summary TSV to write")
    parser.add_argument("--gpu-records", type=Path, required=True,
                        help="the directory of the workflow's <sample>.gpus files (CUDA_VISIBLE_DEVICES per sample)")
    parser.add_argument("sample_dirs", nargs="+", type=Path, help="one vnp predict output directory per sample")
    args = parser.parse_args()
    rows = [summarise(directory, args.gpu_records) for directory in args.sample_dirs]
    with args.output.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
