"""`ganbench train` as a user runs it: a record and a sample figure on success; one line and exit
status 2 on bad input, before anything trains."""
from __future__ import annotations

import json

import pytest
import torch

from ganbench import cli

RING = ["train", "--dataset", "ring", "--arch", "mlp", "--loss", "hinge", "--steps", "40", "--seed", "3",
        "--quiet", "--set", "eval_every=20", "--set", "arch.hidden=16", "--set", "metric.point_metrics.num_samples=200"]


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_train_writes_record_and_scatter_plot(tmp_path, capsys):
    out = tmp_path / "trial"
    assert cli.main([*RING, "--threads", "1", "--output", str(out)]) == 0
    record = json.loads((out / "record.json").read_text())
    assert record["spec"]["loss"] == "hinge" and record["spec"]["seed"] == 3 and record["spec"]["steps"] == 40
    assert record["status"] in {"converged", "unstable", "collapsed"}
    assert [p["step"] for p in record["curve"]] == [20, 40]
    assert record["environment"]["threads"] == 1
    assert (out / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    assert "fd_points" in printed and "record.json" in printed


@pytest.mark.parametrize("args, says", [
    (["--loss", "hinj"], "hinj"),                                      # unknown component
    (["--set", "loss.margin=2"], "margin"),                            # unknown parameter
    (["--set", "batch_size=many"], "batch_size"),                      # mistyped value
    (["--arch", "dcgan"], "dcgan"),                                    # incompatible with 2-D points
    (["--dataset", "mnist", "--arch", "mlp", "--set", "dataset.root=/nonexistent"], "/nonexistent"),  # missing data
    (["--threads", "0"], "--threads"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--steps", "0"], "steps"),
    (["--set", "lr_d=-1"], "setting 'lr_d' must be a finite number > 0"),
    (["--set", "lr_g=nan"], "setting 'lr_g' must be a finite number > 0"),
    (["--set", "beta2=1.5"], "setting 'beta2' (Adam) must be in [0, 1)"),
])
def test_bad_input_is_one_line_and_status_2(tmp_path, capsys, args, says):
    out = tmp_path / "trial"
    assert cli.main([*RING, *args, "--output", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ganbench: error:") and says in err[0], err
    assert not out.exists()  # nothing trained, nothing written


def test_an_unwritable_output_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert cli.main([*RING, "--output", str(blocker / "trial")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Not a directory" in err[0], err
