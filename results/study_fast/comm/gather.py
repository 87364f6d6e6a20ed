"""Gathers the beta sweeps and fixed-schedule evaluations of the study's COPA seeds into one
run folder per seed (its config.json and summary.json, and an eval.csv with every row of that
seed), the layout ``python -m cpfast.report`` reads, and all rows into one eval.csv for
``python -m cpfast.plot --eval-csv``:

    python results/study_fast/comm/gather.py
"""

import csv
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent
STUDY = HERE.parent
SOURCES = ["copa_s0/beta", "copa_s1_s2/beta", *(f"copa_s1_s2/periodic_every{k}" for k in (2, 3, 4, 6, 8)),
           "copa_s3/beta", *(f"copa_s3/periodic_every{k}" for k in (2, 3, 4, 6, 8))]


def main() -> None:
    rows: dict[int, list[dict]] = {}
    fields: list[str] = []
    for source in SOURCES:
        with open(STUDY / source / "eval.csv", newline="") as f:
            reader = csv.DictReader(f)
            fields += [name for name in reader.fieldnames if name not in fields]
            for row in reader:
                rows.setdefault(int(row["seed"]), []).append(row)
    with open(HERE / "eval.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="1")  # rows before comm_every: every decision time
        writer.writeheader()
        writer.writerows(row for _, seed_rows in sorted(rows.items()) for row in seed_rows)
    for seed, seed_rows in sorted(rows.items()):
        run = HERE / "runs" / f"copa_s{seed}"
        run.mkdir(parents=True, exist_ok=True)
        for name in ("config.json", "summary.json"):
            shutil.copy(STUDY / f"copa_s{seed}" / name, run / name)
        with open(run / "eval.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields, restval="1")  # rows before comm_every: every decision time
            writer.writeheader()
            writer.writerows(seed_rows)


if __name__ == "__main__":
    main()
