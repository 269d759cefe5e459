"""Hand-made trial records (ganbench/record.py schema 1) for the leaderboard, report and compare tests."""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any


def make_spec(arch: str = "mlp", loss: str = "nonsaturating", seed: int = 0, *, dataset: str = "ring",
              schedule: str = "alternating", steps: int = 200, **params: dict[str, Any]) -> dict[str, Any]:
    return {
        "dataset": dataset, "arch": arch, "loss": loss, "schedule": schedule,
        "dataset_params": params.get("dataset_params", {}), "arch_params": params.get("arch_params", {}),
        "loss_params": params.get("loss_params", {}), "schedule_params": params.get("schedule_params", {}),
        "steps": steps, "batch_size": 64, "z_dim": 8, "lr_d": 2e-4, "lr_g": 2e-4, "beta1": 0.5, "beta2": 0.999,
        "seed": seed, "eval_every": 50, "metrics": [], "metric_params": {},
    }


def make_curve(final: float, steps: int, images_per_s: float, d_acc: float = 0.6) -> list[dict[str, Any]]:
    """Eval points whose metric falls from 3x the final value to the final value."""
    points = []
    for i, step in enumerate(range(50, steps + 1, 50)):
        frac = (i + 1) / (steps // 50)
        points.append({
            "step": step, "images_seen": step * 64, "wall_time": step * 64 / images_per_s,
            "metrics": {"fd_points": final * (3 - 2 * frac), "modes": 8.0 * frac},
            "d_loss": 1.2, "g_loss": 0.8, "d_acc_real": d_acc + 0.3 * (1 - frac),
            "d_acc_fake": d_acc + 0.2 * (1 - frac), "d_grad_norm": 1.0, "g_grad_norm": 0.5,
        })
    return points


def make_record(arch: str = "mlp", loss: str = "nonsaturating", seed: int = 0, value: float | None = 1.0, *,
                status: str = "converged", images_per_s: float = 1000.0, generated_count: int = 1000,
                primary: str = "fd_points", samples: list | None = None, **spec_kw: Any) -> dict[str, Any]:
    """A record; ``value=None`` or ``status="failed"`` makes a failed trial (no metrics)."""
    spec = make_spec(arch, loss, seed, **spec_kw)
    failed = status == "failed" or value is None
    status = "failed" if failed else status
    params = " ".join(f"{p}.{k}={v}" for p in ("arch", "loss", "schedule") for k, v in sorted(spec[f"{p}_params"].items()))
    record = {
        "schema": 1,
        "trial_key": hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12],
        "config": " ".join([arch, loss, spec["schedule"]] + ([params] if params else [])),
        "spec": spec, "status": status, "error": "RuntimeError: boom" if failed else None, "device": "cpu",
        "primary": primary, "lower_is_better": True,
        "metrics": {} if failed else {primary: float(value), "modes": 8.0},
        "curve": [] if failed else make_curve(float(value), spec["steps"], images_per_s),
        "convergence": {} if failed else {
            "best": value, "best_step": spec["steps"], "final": value, "steps_to_90": 0.8 * spec["steps"],
            "seconds_to_90": 0.8 * spec["steps"] * 64 / images_per_s, "auc": 2 * value, "instability": 0.01,
            "diverged": status == "diverged", "diverged_step": None, "collapsed": status == "collapsed",
            "status": status},
        "throughput": {} if failed else {
            "images_per_s": images_per_s, "step_time_ms": 64e3 / images_per_s, "peak_memory_mb": math.nan,
            "train_seconds": spec["steps"] * 64 / images_per_s, "eval_seconds": 0.1,
            "wall_seconds": spec["steps"] * 64 / images_per_s + 0.1},
        "protocol": {} if failed else {primary: {
            "metric": primary, "extractor": "coordinates", "weights_hash": None, "reference_split": "ring",
            "reference_count": 1000, "generated_count": generated_count, "image_size": 0, "channels": 1,
            "versions": {"torch": "2.14.1"}}},
        "environment": {"python": "3.11", "torch": "2.14.1", "platform": "linux", "device_name": "cpu", "threads": 1},
    }
    if samples is not None:
        record["samples"] = samples
    return record


def run_command(argv: list[str]) -> int:
    """Run a leaderboard/report/compare subcommand the way ganbench.cli does: a GanbenchError is
    one line on stderr and exit status 2."""
    import argparse
    import sys

    from ganbench import compare, leaderboard, report
    from ganbench.api import GanbenchError

    parser = argparse.ArgumentParser(prog="ganbench")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (leaderboard, report, compare):
        module.register_cli(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GanbenchError as exc:
        print(f"ganbench: error: {exc}", file=sys.stderr)
        return 2
