"""The trial record: one JSON-serialisable dict per trial, stored in the Optuna storage.

Everything downstream (leaderboards, reports, compare) reads these. Keys (schema 1)::

    schema        1
    trial_key     TrialSpec.key(): id of the exact trial (configuration + seed + budget)
    config        TrialSpec.config_label(): configuration without the seed (leaderboard row)
    spec          TrialSpec.to_dict()  (dataset, arch, loss, schedule, *_params, steps, seed, ...)
    status        converged | unstable | collapsed | diverged | failed | pruned
    error         short reason when status == failed (else None)
    device        "cpu" | "cuda:0" ...
    primary       name of the primary metric value, e.g. "fd_digits" or "fd_points"
    lower_is_better  direction of the primary metric
    metrics       final metric values {name: float}  (NaN when not evaluated)
    curve         list of eval points: {step, images_seen, wall_time, metrics: {...}, d_loss,
                  g_loss, d_acc_real, d_acc_fake, d_grad_norm, g_grad_norm}
    convergence   {best, best_step, final, steps_to_90, seconds_to_90, auc, instability,
                   diverged, diverged_step, collapsed, status}
    throughput    {images_per_s, step_time_ms, peak_memory_mb, train_seconds, eval_seconds,
                   wall_seconds}
    protocol      {metric_name: {metric, extractor, weights_hash, reference_split,
                   reference_count, generated_count, image_size, channels, versions...}}
    environment   {python, torch, torch_fidelity, ganbench, platform, device_name, threads}
    samples       optional: a small list of generated samples (nested lists) for report figures
"""
from __future__ import annotations

SCHEMA_VERSION = 1
STATUSES = ("converged", "unstable", "collapsed", "diverged", "failed", "pruned")
