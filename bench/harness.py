#!/usr/bin/env python3
"""Bench driver: runs oceanflow and its peers on the generated datasets, each in a fresh
process per (engine, dataset) and repetition, measures wall time and peak RSS, checks that all
engines agree, and prints one table per dataset. Called by bench/run.sh (which creates the
virtualenv, generates the data and builds oceanflow); see bench/README.md.
"""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time

import psutil

HERE = os.path.dirname(os.path.abspath(__file__))
PY = sys.executable
PEERS = ["dask", "dask-distributed", "polars", "duckdb", "pandas"]
OCEANFLOW = ["oceanflow-q1q4", "oceanflow-all"]
ALL_ENGINES = OCEANFLOW + PEERS
MERGEABLE = ["polars", "duckdb"]
REGIONS = ["north_sea", "norwegian_sea", "barents_sea"]


def log(msg=""):
    print(msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ measurement


def measure(cmd, log_path, timeout_s, poll_s=0.025):
    """Runs cmd, returns {rc, wall_s, peak_rss_mb, timed_out}. Peak RSS is the maximum over
    time of the summed RSS of the process and all its descendants (so dask-distributed's
    worker processes count), and at least the kernel's ru_maxrss of the direct child."""
    with open(log_path, "wb") as logf:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        proc = psutil.Process(p.pid)
        peak = 0
        timed_out = False
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid != 0:
                break
            total = 0
            try:
                procs = [proc] + proc.children(recursive=True)
            except psutil.NoSuchProcess:
                procs = []
            for q in procs:
                try:
                    total += q.memory_info().rss
                except psutil.Error:
                    pass
            peak = max(peak, total)
            if time.perf_counter() - t0 > timeout_s:
                timed_out = True
                for q in reversed(procs):
                    try:
                        q.kill()
                    except psutil.Error:
                        pass
            time.sleep(poll_s)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    peak = max(peak, ru.ru_maxrss * 1024)
    return {"rc": p.returncode, "wall_s": wall, "peak_rss_mb": peak / 2**20, "timed_out": timed_out}


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


# ------------------------------------------------------------------------ normalized results


def load_peer(path):
    with open(path) as f:
        return json.load(f)


def load_oceanflow(path):
    """oceanflow's --once --output JSON -> the peers' normalized shape (missing parts absent)."""
    with open(path) as f:
        raw = json.load(f)
    out = {}
    stations = raw.get("stations")
    if isinstance(stations, list):
        out["q1"] = {s["station"]: int(s["count"]) for s in stations}
        q2 = {}
        for s in stations:
            v = s.get("variables", {})
            t, d = v.get("temperature_c", {}), v.get("depth_m", {})
            q2[s["station"]] = {
                "temperature_c": {k: t.get(k) for k in ("count", "mean", "min", "max")},
                "depth_m": {k: d.get(k) for k in ("count", "mean")},
            }
        out["q2"] = q2
    temporal = raw.get("temporal")
    if isinstance(temporal, list):
        q3 = {"year": {}, "month_of_year": {}}
        for e in temporal:
            if e.get("station") is not None:
                continue
            if e.get("grouping") == "year":
                q3["year"][str(e["key"])[:4]] = int(e["count"])
            elif e.get("grouping") == "month_of_year":
                q3["month_of_year"][str(int(e["key"]))] = int(e["count"])
        out["q3"] = q3
    regions = raw.get("regions")
    if isinstance(regions, list):
        out["q4"] = {r["region"]: int(r["count"]) for r in regions}
    out["rows"] = sum(out.get("q1", {}).values())
    return out


def close(a, b, rel=1e-9):
    if a is None or b is None:
        return a is None and b is None
    return abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def compare(ref, res):
    """Returns a list of problems of res against ref (Q1/Q4 exact, Q3 exact, Q2 rel 1e-9)."""
    problems = []
    for q in ("q1", "q4"):
        if q not in res:
            problems.append(f"{q.upper()} missing")
        elif res[q] != ref[q]:
            diff = {k: (ref[q].get(k), res[q].get(k)) for k in set(ref[q]) | set(res[q]) if ref[q].get(k) != res[q].get(k)}
            problems.append(f"{q.upper()} counts differ (ref, this): {dict(sorted(diff.items())[:5])}")
    if "q3" in res:
        for g in ("year", "month_of_year"):
            if res["q3"].get(g) != ref["q3"][g]:
                problems.append(f"Q3 {g} counts differ")
    if "q2" in res:
        bad = 0
        for st, r in ref["q2"].items():
            o = res["q2"].get(st)
            if o is None:
                bad += 1
                continue
            for var, stats in (("temperature_c", ("count", "mean", "min", "max")), ("depth_m", ("count", "mean"))):
                for k in stats:
                    if not close(r[var][k], o.get(var, {}).get(k)):
                        bad += 1
        if bad:
            problems.append(f"Q2: {bad} values differ")
    return problems


# ------------------------------------------------------------------------------- the runs


class Bench:
    def __init__(self, a):
        self.a = a
        self.work = os.path.join(a.results_dir, "runs")
        os.makedirs(self.work, exist_ok=True)
        self.oceanflow = a.oceanflow if a.oceanflow and os.access(a.oceanflow, os.X_OK) else None
        self.md = []

    def oceanflow_config(self, data, out_path):
        with open(os.path.join(HERE, "q1q4.toml")) as f:
            text = f.read()
        text = re.sub(r'(?m)^path = ".*"$', f"path = {json.dumps(os.path.abspath(data))}", text, count=1)
        text = re.sub(r'(?m)^listen = ".*"$', f'listen = "127.0.0.1:{free_port()}"', text, count=1)
        with open(out_path, "w") as f:
            f.write(text)

    def command(self, engine, inputs, out_json, tag, merge_with=None):
        if engine == "oceanflow-q1q4":
            cfg = os.path.join(self.work, f"{tag}.q1q4.toml")
            self.oceanflow_config(inputs[0], cfg)
            return [self.oceanflow, "run", "--config", cfg, "--once", "--output", out_json,
                    "--workers", str(self.a.workers)]
        if engine == "oceanflow-all":
            return [self.oceanflow, "run", "--input", os.path.abspath(inputs[0]), "--once",
                    "--output", out_json, "--listen", f"127.0.0.1:{free_port()}",
                    "--workers", str(self.a.workers)]
        cmd = [PY, os.path.join(HERE, "peers.py"), engine, "--output", out_json]
        for i in inputs:
            cmd += ["--input", i]
        if merge_with:
            cmd += ["--merge-with", merge_with]
        return cmd

    def run_engine(self, engine, inputs, tag, merge_with=None):
        """Runs `reps` fresh processes; returns a summary dict (medians) or None."""
        label = engine + ("+merge" if merge_with else "")
        if engine.startswith("oceanflow") and self.oceanflow is None:
            log(f"  {label:<18} oceanflow: not built")
            return {"engine": label, "status": "not built"}
        reps = []
        out_json = os.path.join(self.work, f"{tag}.{label}.json")
        log_path = os.path.join(self.work, f"{tag}.{label}.log")
        for i in range(self.a.reps):
            if os.path.exists(out_json):
                os.remove(out_json)
            cmd = self.command(engine, inputs, out_json, tag, merge_with)
            m = measure(cmd, log_path, self.a.timeout)
            if m["rc"] != 0 or not os.path.exists(out_json):
                why = "timed out" if m["timed_out"] else f"exit {m['rc']}"
                log(f"  {label:<18} FAILED ({why}); last lines of {log_path}:")
                log("    " + tail(log_path).replace("\n", "\n    "))
                return {"engine": label, "status": f"failed ({why})"}
            res = load_oceanflow(out_json) if engine.startswith("oceanflow") else load_peer(out_json)
            m["query_s"] = res.get("query_s", m["wall_s"])
            reps.append(m)
            log(f"  {label:<18} rep {i + 1}/{self.a.reps}: query {m['query_s']:.3f} s, "
                f"wall {m['wall_s']:.3f} s, peak {m['peak_rss_mb']:.0f} MB")
        return {
            "engine": label,
            "status": "ok",
            "query_s": statistics.median(r["query_s"] for r in reps),
            "wall_s": statistics.median(r["wall_s"] for r in reps),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in reps),
            "result": res,
            "result_path": out_json,
        }

    def check(self, summaries):
        ok = [s for s in summaries if s["status"] == "ok"]
        peers = [s for s in ok if not s["engine"].startswith("oceanflow")]
        if not peers:
            return
        ref_s = next((s for s in peers if s["engine"] == "duckdb"), peers[0])
        ref = ref_s["result"]
        for s in ok:
            problems = compare(ref, s["result"])
            s["check"] = "ok" if not problems else "MISMATCH"
            if problems:
                log("")
                log("!" * 78)
                log(f"!!! MISMATCH: {s['engine']} disagrees with {ref_s['engine']}:")
                for p in problems:
                    log(f"!!!   {p}")
                log("!" * 78)

    def table(self, title, rows, summaries, baseline_names=("oceanflow-q1q4", "dask")):
        base = {n: next((s for s in summaries if s["engine"] == n and s["status"] == "ok"), None)
                for n in baseline_names}
        head = ["engine", "time (s)", "wall (s)", "rows/s", "peak RSS (MB)",
                "÷ oceanflow(Q1–Q4)", "÷ dask", "check"]
        lines = []
        for s in summaries:
            if s["status"] != "ok":
                lines.append([s["engine"], s["status"], "", "", "", "", "", ""])
                continue
            def ratio(name):
                b = base.get(name)
                return f"{s['query_s'] / b['query_s']:.3g}×" if b and b["query_s"] > 0 else "–"
            lines.append([
                s["engine"], f"{s['query_s']:.3f}", f"{s['wall_s']:.3f}",
                f"{rows / s['query_s'] / 1e6:.2f}M" if rows and s["query_s"] > 0 else "–",
                f"{s['peak_rss_mb']:.0f}", ratio(baseline_names[0]), ratio(baseline_names[1]),
                s.get("check", "–"),
            ])
        widths = [max(len(str(x)) for x in col) for col in zip(head, *lines)]
        log("")
        log(f"== {title}")
        log("  ".join(h.ljust(w) for h, w in zip(head, widths)))
        log("  ".join("-" * w for w in widths))
        for l in lines:
            log("  ".join(str(x).ljust(w) for x, w in zip(l, widths)))
        log("")
        self.md.append(f"### {title}\n")
        self.md.append("| " + " | ".join(head) + " |")
        self.md.append("|" + "|".join("---" for _ in head) + "|")
        for l in lines:
            self.md.append("| " + " | ".join(str(x) for x in l) + " |")
        self.md.append("")

    def dataset(self, rows, fmt):
        data = os.path.join(self.a.data_dir, f"tutorial_{rows}.{fmt}")
        tag = f"{rows}.{fmt}"
        log(f"\n### {rows:,} rows, {fmt} ({os.path.getsize(data) / 2**20:.0f} MiB): {data}")
        summaries = [self.run_engine(e, [data], tag) for e in self.a.engines]
        self.check(summaries)
        self.table(f"{rows:,} rows, {fmt} — median of {self.a.reps}", rows, summaries)
        return summaries

    def incremental(self, rows, fmt, extra, base_summaries):
        base = os.path.join(self.a.data_dir, f"tutorial_{rows}.{fmt}")
        tag = f"{rows}+{self.a.extra_rows}.{fmt}"
        log(f"\n### incremental: {self.a.extra_rows:,} rows arrive after {rows:,} ({fmt}): {extra}")
        summaries = []
        for e in self.a.engines:
            if e.startswith("oceanflow"):
                continue
            summaries.append(self.run_engine(e, [base, extra], tag))
        for e in MERGEABLE:
            if e not in self.a.engines:
                continue
            prev = next((s for s in base_summaries if s["engine"] == e and s["status"] == "ok"), None)
            if prev is None:
                prev = self.run_engine(e, [base], f"{rows}.{fmt}")
            if prev.get("status") != "ok":
                continue
            summaries.append(self.run_engine(e, [extra], tag, merge_with=prev["result_path"]))
        self.check(summaries)
        self.table(f"incremental: time until Q1–Q4 reflect {self.a.extra_rows:,} new rows after "
                   f"{rows:,} ({fmt}) — median of {self.a.reps}", None,
                   summaries, baseline_names=("oceanflow-q1q4", "dask"))
        # oceanflow's side: a dedicated bench binary keeps the dataflow running over the base
        # file, feeds the extra rows and times until every aggregate reflects them.
        ob = self.a.oceanflow_bench
        if ob and os.access(ob, os.X_OK):
            log(f"  oceanflow-bench incremental --base {base} --extra {extra}")
            p = subprocess.run([ob, "incremental", "--base", base, "--extra", extra],
                               capture_output=True, text=True, timeout=self.a.timeout)
            out = p.stdout.strip().splitlines()
            line = out[-1] if out else f"(no output; exit {p.returncode}) {p.stderr.strip()[-500:]}"
            log(f"  oceanflow incremental: {line}")
            self.md.append(f"oceanflow incremental ({fmt}): `{line}`\n")
        else:
            log("  oceanflow incremental: target/release/oceanflow-bench not built")
            self.md.append("oceanflow incremental: oceanflow-bench not built\n")
        return summaries


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", default="1000000,10000000")
    ap.add_argument("--formats", default="parquet,csv")
    ap.add_argument("--engines", default=",".join(ALL_ENGINES))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=900, help="seconds per engine run")
    ap.add_argument("--extra-rows", type=int, default=1000)
    ap.add_argument("--incremental", default="max", help="'max' (largest --rows), a row count, or 'none'")
    ap.add_argument("--data-dir", default=os.path.join(HERE, "data"))
    ap.add_argument("--results-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--oceanflow", default="")
    ap.add_argument("--oceanflow-bench", default="")
    a = ap.parse_args(argv)
    a.rows = [int(r) for r in a.rows.split(",") if r]
    a.formats = [f for f in a.formats.split(",") if f]
    a.engines = [e for e in a.engines.split(",") if e]
    unknown = set(a.engines) - set(ALL_ENGINES)
    if unknown:
        raise SystemExit(f"harness: unknown engines {sorted(unknown)}; known: {ALL_ENGINES}")
    b = Bench(a)
    if b.oceanflow is None:
        log("oceanflow: not built (the oceanflow rows are skipped)")

    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    all_results = {}
    for rows in a.rows:
        for fmt in a.formats:
            all_results[f"{rows}.{fmt}"] = b.dataset(rows, fmt)

    inc_rows = None if a.incremental == "none" else (max(a.rows) if a.incremental == "max" else int(a.incremental))
    if inc_rows is not None:
        for fmt in a.formats:
            extra = os.path.join(a.data_dir, f"tutorial_{inc_rows}_extra{a.extra_rows}.{fmt}")
            if not os.path.exists(extra):
                raise SystemExit(f"harness: {extra} missing (bench/run.sh generates it)")
            base_s = all_results.get(f"{inc_rows}.{fmt}", [])
            all_results[f"{inc_rows}+{a.extra_rows}.{fmt}"] = b.incremental(inc_rows, fmt, extra, base_s)

    mismatches = [(k, s["engine"]) for k, ss in all_results.items() for s in ss if s.get("check") == "MISMATCH"]
    failures = [(k, s["engine"]) for k, ss in all_results.items() for s in ss if s["status"].startswith("failed")]

    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    hdr = [
        "# oceanflow bench — latest run", "",
        f"- started: {started}",
        f"- machine: {os.cpu_count()} CPUs ({cpu}), {psutil.virtual_memory().total / 2**30:.0f} GiB RAM",
        f"- reps: {a.reps} (median), oceanflow workers: {a.workers}",
        "- time = in-process query time for peers (read + aggregate + materialize; imports and "
        "cluster start-up excluded), whole-process wall time for oceanflow; "
        "÷ X = this engine's time divided by X's (above 1: slower than X)",
        "- peak RSS = max over time of the summed RSS of the process tree",
        "",
    ]
    if mismatches:
        hdr += [f"**MISMATCHES: {mismatches}**", ""]
    if failures:
        hdr += [f"**FAILURES: {failures}**", ""]
    os.makedirs(a.results_dir, exist_ok=True)
    with open(os.path.join(a.results_dir, "latest.md"), "w") as f:
        f.write("\n".join(hdr + b.md) + "\n")
    slim = {k: [{kk: vv for kk, vv in s.items() if kk != "result"} for s in ss] for k, ss in all_results.items()}
    with open(os.path.join(a.results_dir, "latest.json"), "w") as f:
        json.dump(slim, f, indent=1)
    log(f"results written to {os.path.join(a.results_dir, 'latest.md')}")
    if mismatches:
        log(f"!!! {len(mismatches)} result MISMATCH(ES): {mismatches}")
        return 2
    if failures:
        log(f"!!! {len(failures)} engine run(s) failed: {failures}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
