"""ganbench: a plugin-based benchmarking suite for GAN experiments."""
from __future__ import annotations

__version__ = "0.1.0"

from .api import (  # noqa: E402
    GAN, DataSpec, Dataset, GanbenchError, Loss, Metric, MetricResult, Schedule, StepPlan, TensorDataset,
)
from .plugins import hookimpl  # noqa: E402

__all__ = [
    "__version__", "hookimpl", "GAN", "DataSpec", "Dataset", "TensorDataset", "Loss", "Schedule",
    "StepPlan", "Metric", "MetricResult", "GanbenchError",
]
