"""Shared by the tests that drive sweeps through the CLI: a tiny sweep config and a runner."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent

TINY_SWEEP = """
name = "{name}"
plugins = {plugins}
[trial]
dataset = "ring"
arch = "mlp"
steps = {steps}
eval_every = 0
batch_size = 32
z_dim = 4
"arch.hidden" = 16
"metric.point_metrics.num_samples" = 200
[grid]
loss = {losses}
seed = {seeds}
"""


def write_sweep(tmp_path: Path, losses=("nonsaturating", "hinge", "least_squares"), seeds=(0, 1),
                steps: int = 30, plugins=(), name: str = "small") -> Path:
    """A sweep of losses x seeds on the ring with a 16-unit MLP: each trial takes about a second."""
    path = tmp_path / "sweep.toml"
    path.write_text(TINY_SWEEP.format(name=name, losses=json.dumps(list(losses)), seeds=json.dumps(list(seeds)),
                                      steps=steps, plugins=json.dumps(list(plugins))))
    return path


def ganbench(tmp_path: Path, *args: str, env: dict[str, str] | None = None, background: bool = False):
    """Run the CLI in a subprocess with results under tmp_path; tests/ is importable (-p plugins)."""
    full_env = {**os.environ, "GANBENCH_RESULTS": str(tmp_path / "results"),
                "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]), **(env or {})}
    cmd = [sys.executable, "-m", "ganbench", *args]
    if background:  # own session: a SIGKILL to the group takes the process and anything it started
        return subprocess.Popen(cmd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=600)
