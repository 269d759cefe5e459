"""ganbench-extras: an example third-party ganbench plugin (two losses, two schedules)."""
from __future__ import annotations

__version__ = "0.1.0"
