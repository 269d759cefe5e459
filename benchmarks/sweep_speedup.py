"""Sweep scaling: the default sweep with 1 and with 2 CPU workers, side by side in one run.

    python benchmarks/sweep_speedup.py [--sweep default] [--workers 1,2] [--set steps=1000]

Each run is a fresh study in its own temporary results folder (nothing is resumed); the domain
feature extractor's cache is shared and warmed first, so both runs measure sweeping, not the
one-off extractor training. Prints wall time per worker count and the speed-up over 1 worker.
Target (issue 4): >= 1.6x with 2 workers on a 2-core machine.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_sweep(sweep: str, workers: int, overrides: list[str], env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix=f"gb-speedup-{workers}w-") as tmp:
        cmd = [sys.executable, "-m", "ganbench", "run", "--grid", "--sweep", sweep, "--workers", str(workers), "--quiet"]
        for item in overrides:
            cmd += ["--set", item]
        start = time.perf_counter()
        result = subprocess.run(cmd, env={**env, "GANBENCH_RESULTS": tmp}, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            sys.exit(f"sweep with {workers} worker(s) failed:\n{result.stderr[-2000:]}")
        tail = [line for line in result.stdout.splitlines() if "completed" in line]
        print(f"  {workers} worker(s): {elapsed:7.1f} s   {tail[-1].strip() if tail else ''}", flush=True)
        return elapsed


def warm_cache(sweep: str, env: dict[str, str]) -> None:
    """Train/cache the dataset's feature extractor and reference statistics once, outside the timed
    runs: the same sweep at one step per trial, through the same code path the timed runs take."""
    with tempfile.TemporaryDirectory(prefix="gb-speedup-warm-") as tmp:
        cmd = [sys.executable, "-m", "ganbench", "run", "--grid", "--sweep", sweep, "--workers", "1", "--quiet",
               "--set", "steps=1", "--set", "eval_every=0"]
        result = subprocess.run(cmd, env={**env, "GANBENCH_RESULTS": tmp}, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"warm-up sweep failed:\n{result.stderr[-2000:]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sweep", default="default")
    parser.add_argument("--workers", default="1,2", help="comma-separated worker counts (first is the reference)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    env = dict(os.environ)
    env.setdefault("GANBENCH_CACHE", str(Path(tempfile.gettempdir()) / "ganbench-bench-cache"))
    print(f"sweep {args.sweep!r} {' '.join(args.overrides)} on {os.cpu_count()} CPU(s)")
    warm_cache(args.sweep, env)
    times = {w: run_sweep(args.sweep, w, args.overrides, env) for w in counts}
    ref = times[counts[0]]
    for w in counts[1:]:
        print(f"speed-up {w} workers vs {counts[0]}: {ref / times[w]:.2f}x")


if __name__ == "__main__":
    main()
