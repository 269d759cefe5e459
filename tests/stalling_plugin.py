"""A test plugin that holds a trial at its start while GANBENCH_TEST_STALL is set, so that a test can
kill a worker in the middle of a trial however fast the machine trains (no race with a short trial)."""
from __future__ import annotations

import os
import time

from ganbench import hookimpl


@hookimpl
def ganbench_trial_start(spec, device):
    while os.environ.get("GANBENCH_TEST_STALL"):
        time.sleep(1.0)
