"""A test plugin that holds trials at their start, so that tests about concurrency do not race with
trials that a fast machine finishes in milliseconds:

- while GANBENCH_TEST_STALL is set, a trial waits (a test kills its worker in the middle of it);
- GANBENCH_TEST_TRIAL_DELAY=SECONDS makes every trial last at least that long (every worker of a
  sweep gets a share of the grid, however quickly the first one starts).
"""
from __future__ import annotations

import os
import time

from ganbench import hookimpl


@hookimpl
def ganbench_trial_start(spec, device):
    time.sleep(float(os.environ.get("GANBENCH_TEST_TRIAL_DELAY", "0")))
    while os.environ.get("GANBENCH_TEST_STALL"):
        time.sleep(1.0)
