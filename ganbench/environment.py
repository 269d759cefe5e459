"""What a result was measured on: library versions, platform, device, threads."""
from __future__ import annotations

import platform
import resource
import sys
from functools import lru_cache
from importlib import metadata

import torch


@lru_cache(maxsize=None)
def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("ganbench", "torch", "torch-fidelity", "optuna", "numpy"):
        try:
            out[dist.replace("-", "_")] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist.replace("-", "_")] = "not installed"
    return out


def environment(device: torch.device) -> dict[str, str | int]:
    env: dict[str, str | int] = dict(_versions())
    env["platform"] = platform.platform()
    env["threads"] = torch.get_num_threads()
    if device.type == "cuda" and torch.cuda.is_available():
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cuda"] = str(torch.version.cuda)
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory: CUDA allocator peak on GPU; the process's peak RSS on CPU."""
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)
