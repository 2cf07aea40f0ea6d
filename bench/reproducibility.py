#!/usr/bin/env python3
"""Identical bounded runs of one CSV: do they write the same document?

    python3 bench/reproducibility.py --binary target/release/oceanflow [--rows 300000]

Writes a tutorial-shaped CSV (50 stations, one row per 30 s, so 300,000 rows span 104 days and
the default 30-day hourly retention applies), runs `oceanflow run --input obs.csv --once`
with 1, 1, 1, 1, 2, 2 and 4 workers, and prints each document's temporal row count and
SHA-256. Standard library only.
"""
import argparse
import datetime
import hashlib
import json
import random
import subprocess
import tempfile
from pathlib import Path


def write_csv(path: Path, rows: int) -> None:
    rng = random.Random(7)
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    with path.open("w") as f:
        f.write("timestamp,station_id,latitude,longitude,temperature_c,salinity_psu,depth_m,dissolved_oxygen\n")
        for i in range(rows):
            t = start + datetime.timedelta(seconds=30 * i)
            s = i % 50
            f.write(
                f"{t.strftime('%Y-%m-%dT%H:%M:%SZ')},STATION-{s:03d},{50 + (s % 10) * 2.5},"
                f"{-4 + (s // 10) * 3},{rng.gauss(8, 4):.3f},{rng.gauss(35, 0.5):.3f},"
                f"{rng.uniform(0, 500):.2f},{rng.gauss(7, 1):.3f}\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binary", required=True)
    parser.add_argument("--rows", type=int, default=300_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "obs.csv"
        write_csv(data, args.rows)
        digests = set()
        for i, workers in enumerate([1, 1, 1, 1, 2, 2, 4]):
            out = Path(tmp) / f"out-{i}.json"
            subprocess.run(
                [args.binary, "run", "--input", str(data), "--once", "--workers", str(workers),
                 "--output", str(out)],
                check=True, stderr=subprocess.DEVNULL,
            )
            raw = out.read_bytes()
            digest = hashlib.sha256(raw).hexdigest()[:12]
            digests.add(digest)
            print(f"workers {workers}: {len(json.loads(raw)['temporal'])} temporal rows, sha256 {digest}")
        print("identical" if len(digests) == 1 else f"{len(digests)} different documents")


if __name__ == "__main__":
    main()
