#!/usr/bin/env python3
"""Steady-state memory over a simulated 90-day cruise at ship rates.

Runs the release `oceanflow` on a synthetic feed (one observation per second of event time
from 20 instruments, 90 days = 7.8M rows) with retention on, paced to finish in about a
minute, and samples the process's resident memory and live aggregate keys whenever the
event-time frontier crosses another simulated day. Prints a table and the spread from day 10
to day 90 (target: within ±10 %).

    python3 bench/cruise.py [--binary target/release/oceanflow] [--days 90]

Standard library only.
"""

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

START = 1_577_836_800  # 2020-01-01T00:00:00Z
DAY = 86_400

CONFIG = """
variables = ["temperature_c", "salinity_psu", "depth_m", "dissolved_oxygen"]

[pipeline]
workers = 2

[[sources]]
kind = "synthetic"
name = "cruise"
stations = 20
seed = 90
interval = "1s"
rows_per_second = {rate}
limit = {rows}
batch_rows = 8192

[aggregates.temporal]
retention = {{ hour = "7days", day = "10days", month = "40days" }}

[[regions]]
name = "north_sea"
wkt = "POLYGON((-5 51, 9 51, 9 62, -5 62, -5 51))"
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            return r.read().decode()
    except OSError:
        return None


def value(text, series):
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default="target/release/oceanflow")
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seconds", type=float, default=60.0, help="wall time to spread the cruise over")
    args = ap.parse_args()
    rows = args.days * DAY  # one row per second of event time, spread over the instruments
    rate = int(rows / args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "cruise.toml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(rows=rows, rate=rate))
        port = free_port()
        proc = subprocess.Popen(
            [args.binary, "run", "--once", "--config", cfg, "--listen", f"127.0.0.1:{port}"],
            stderr=subprocess.DEVNULL,
            env={**os.environ, "OCEANFLOW_LOG": "warn"},
        )
        samples = []
        next_day = 1
        deadline = time.time() + args.seconds * 3 + 60
        try:
            while proc.poll() is None and time.time() < deadline and next_day <= args.days:
                text = scrape(port)
                if text:
                    frontier = value(text, "oceanflow_aggregates_frontier_seconds")
                    if frontier and frontier >= START + next_day * DAY:
                        day = int((frontier - START) // DAY)
                        keys = value(text, 'oceanflow_state_keys{family="temporal"}')
                        samples.append((day, rss_mib(proc.pid), keys))
                        next_day = day + 1
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"{rows:,} rows over {args.days} simulated days, {rate:,} rows/s\n")
    print("| day | RSS MiB | live temporal keys |")
    print("|---:|---:|---:|")
    for day, rss, keys in samples:
        if day % 10 == 0 or day == samples[-1][0]:
            print(f"| {day} | {rss:.1f} | {keys:.0f} |")
    steady = [(r, k) for d, r, k in samples if d >= 10]
    if steady:
        rss = [r for r, _ in steady]
        keys = [k for _, k in steady]
        print(
            f"\nday 10..{samples[-1][0]}: RSS {min(rss):.1f}..{max(rss):.1f} MiB "
            f"({(max(rss) / min(rss) - 1) * 100:+.1f} %), live temporal keys "
            f"{min(keys):.0f}..{max(keys):.0f}"
        )
    else:
        print("no samples past day 10", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
