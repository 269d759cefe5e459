"""Leaderboards: seed aggregation, the ranking rule, protocol checks, pivots, budget curves, formats."""
from __future__ import annotations

import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from record_factory import make_record, run_command

from ganbench import store
from ganbench.api import GanbenchError
from ganbench.budget import best_of_k_weights, budget_curve, expected_best
from ganbench.leaderboard import leaderboard, pivot, trials_frame
from ganbench.tables import emit, render


def _seeds(arch: str, values: list[float | None], **kw) -> list[dict]:
    return [make_record(arch, seed=s, value=v, **kw) for s, v in enumerate(values)]


def test_fully_successful_configuration_ranks_before_one_with_a_failure():
    records = _seeds("A", [20.0, None, 22.0]) + _seeds("B", [21.5, 21.5, 21.5])
    board = leaderboard(records).set_index("arch")
    assert board.loc["B", "rank"] == 1 and board.loc["A", "rank"] == 2
    assert board.loc["A", ["failed", "n", "trials"]].tolist() == [1, 2, 3]
    assert board.loc["A", "mean"] == pytest.approx(21.0)  # better mean, but a failed seed
    assert board.loc["A", "std"] == pytest.approx(math.sqrt(2.0))
    assert board.loc["B", ["mean", "std", "min", "median", "n", "failed"]].tolist() == [21.5, 0.0, 21.5, 21.5, 3, 0]
    assert "failed or diverged trials ranked after" in board.attrs["ranking_rule"]
    assert "lower is better" in board.attrs["ranking_rule"]


def test_diverged_trials_count_as_failures_and_mean_decides_among_clean_ones():
    records = (_seeds("A", [5.0, 5.0]) + [make_record("B", seed=0, value=1.0, status="diverged")]
               + _seeds("C", [3.0, 4.0]) + _seeds("D", [None, None]))
    board = leaderboard(records)
    assert board["arch"].tolist() == ["C", "A", "B", "D"]
    assert board.set_index("arch").loc["B", "diverged"] == 1
    assert board.set_index("arch").loc["D", "n"] == 0 and math.isnan(board.iloc[-1]["mean"])


def test_higher_is_better_metric_ranks_largest_mean_first():
    records = _seeds("A", [1.0, 1.0]) + _seeds("B", [1.0, 1.0])
    for record, modes in zip(records, [3.0, 5.0, 7.0, 8.0]):
        record["metrics"]["modes"] = modes
    board = leaderboard(records, metric="modes")
    assert board["arch"].tolist() == ["B", "A"]
    assert board["mean"].tolist() == [7.5, 4.0]
    assert "higher is better" in board.attrs["ranking_rule"]


def test_protocol_mismatch_raises_naming_the_field_unless_forced():
    records = _seeds("A", [1.0, 2.0]) + _seeds("B", [1.5], generated_count=500)
    with pytest.raises(GanbenchError, match=r"generated_count: 1000 vs 500") as err:
        leaderboard(records)
    assert "--force" in str(err.value)
    board = leaderboard(records, force=True)
    assert len(board) == 2 and board["protocol"].nunique() == 2


def test_failed_trials_without_a_protocol_do_not_trip_the_check():
    records = _seeds("A", [1.0, None])  # the failed trial has an empty protocol
    assert leaderboard(records)["failed"].tolist() == [1]


def test_partly_unset_parameters_keep_their_own_rows_and_numeric_columns():
    records = (_seeds("mlp", [2.0, 3.0], loss_params={"gp_weight": 10.0})
               + _seeds("mlp", [4.0, 5.0]) + _seeds("mlp", [6.0], loss_params={"gp_weight": 1.0}))
    board = leaderboard(records)
    assert len(board) == 3
    assert board["mean"].tolist() == [2.5, 4.5, 6.0]
    assert board["loss.gp_weight"].iloc[0] == 10.0 and math.isnan(board["loss.gp_weight"].iloc[1])
    for column in ("mean", "std", "min", "median", "max", "images_per_s", "steps_to_90", "instability"):
        assert board[column].dtype == np.float64
    assert board["n"].dtype == np.int64
    assert board["config"].nunique() == 3
    # Grouping by the partly-unset column keeps the unset group too.
    grouped = leaderboard(records, by=["loss.gp_weight"])
    assert sorted(grouped["n"].tolist()) == [1, 2, 2]


def test_settings_that_vary_become_columns_and_label_parts():
    records = _seeds("mlp", [1.0], steps=100) + _seeds("mlp", [2.0], steps=200)
    board = leaderboard(records)
    assert board["steps"].tolist() == [100, 200]
    assert board["config"].tolist() == ["mlp nonsaturating alternating steps=100", "mlp nonsaturating alternating steps=200"]
    assert "lr_d" not in board.columns  # the same everywhere: not a column


def test_by_aggregates_over_other_settings_and_pivot_makes_a_matrix():
    records = []
    for arch, loss, values in (("mlp", "hinge", [1.0, 3.0]), ("mlp", "wgan", [5.0]), ("dcgan", "hinge", [4.0]),
                               ("dcgan", "hinge", [6.0])):
        records += _seeds(arch, values, loss=loss)
    grouped = leaderboard(records, by=["loss", "arch"])
    # Tie at 5.0: the smaller std wins, and a single seed (std NaN) goes after.
    assert grouped[["loss", "arch", "mean", "n"]].values.tolist() == [
        ["hinge", "mlp", 2.0, 2], ["hinge", "dcgan", 5.0, 2], ["wgan", "mlp", 5.0, 1]]
    assert grouped["config"].iloc[0] == "loss=hinge arch=mlp"
    matrix = pivot(grouped, "loss", "arch")
    assert matrix.loc["hinge", "dcgan"] == 5.0 and math.isnan(matrix.loc["wgan", "dcgan"])
    with pytest.raises(GanbenchError, match="unknown --by column 'nope'"):
        leaderboard(records, by=["nope"])


def test_trials_frame_has_one_row_per_trial():
    records = _seeds("A", [1.0, None, 3.0])
    trials = trials_frame(records)
    assert trials["seed"].tolist() == [0, 1, 2]
    assert trials["status"].tolist() == ["converged", "failed", "converged"]
    assert trials["value"].iloc[[0, 2]].tolist() == [1.0, 3.0] and math.isnan(trials["value"].iloc[1])
    with pytest.raises(GanbenchError, match="no trial records"):
        trials_frame([])


# -- budget curve ----------------------------------------------------------------------------------

def test_expected_best_has_the_closed_form():
    # Best of k drawn without replacement from {1, 2, 3}: k=1 -> 2, k=2 -> (1 + 1 + 2) / 3, k=3 -> 1.
    assert expected_best([3.0, 1.0, 2.0]).tolist() == pytest.approx([2.0, 4.0 / 3.0, 1.0])
    assert expected_best([3.0, 1.0, 2.0], lower_is_better=False).tolist() == pytest.approx([2.0, 8.0 / 3.0, 3.0])
    weights = best_of_k_weights(50)
    assert weights.sum(axis=1) == pytest.approx(np.ones(50))


def test_budget_curve_is_monotone_and_reaches_the_overall_best():
    rng = np.random.default_rng(0)
    values = rng.normal(20.0, 3.0, size=12)
    records = [make_record(f"a{i % 4}", seed=i, value=float(v)) for i, v in enumerate(values)]
    records.append(make_record("a0", seed=99, value=None))  # failed: spends no finite value
    curve = budget_curve(records, n_boot=200)
    assert curve["trials"].tolist() == list(range(1, 13))
    assert np.all(np.diff(curve["expected_best"]) <= 1e-12)
    assert curve["expected_best"].iloc[-1] == pytest.approx(values.min())
    assert curve["expected_best"].iloc[0] == pytest.approx(values.mean())
    assert np.all(curve["lower"] <= curve["expected_best"] + 1e-9) and np.all(curve["expected_best"] <= curve["upper"] + 1e-9)


def test_budget_curve_per_group():
    records = _seeds("A", [3.0, 1.0, 2.0]) + _seeds("B", [5.0])
    curve = budget_curve(records, by=["arch"], n_boot=50)
    assert curve.columns.tolist() == ["arch", "trials", "expected_best", "lower", "upper"]
    a = curve[curve["arch"] == "A"]
    assert a["expected_best"].tolist() == pytest.approx([2.0, 4.0 / 3.0, 1.0])
    assert curve[curve["arch"] == "B"]["expected_best"].tolist() == [5.0]


# -- formats and command line ----------------------------------------------------------------------

def test_every_format_carries_the_numbers(tmp_path):
    board = leaderboard(_seeds("A", [20.0, None, 22.0]) + _seeds("B", [21.5, 21.5]))
    rule = board.attrs["ranking_rule"]
    md = render(board, "md", note=rule)
    assert md.splitlines()[0].startswith("| rank | config |") and rule in md
    assert "| 1 | B nonsaturating alternating |" in md
    csv = pd.read_csv(io.StringIO(render(board, "csv")))
    assert csv["mean"].tolist() == [21.5, 21.0] and csv["failed"].tolist() == [0, 1]
    data = json.loads(render(board, "json", note=rule))
    assert data["ranking_rule"] == rule and data["rows"][1]["n"] == 2
    assert "<table" in render(board, "html") and "rank" in render(board, "table", note=rule)
    emit(board, "parquet", tmp_path / "lb.parquet")
    back = pd.read_parquet(tmp_path / "lb.parquet")
    assert back["mean"].tolist() == [21.5, 21.0] and back["config"].tolist() == board["config"].tolist()


@pytest.fixture
def study(monkeypatch):
    records = _seeds("A", [20.0, None, 22.0]) + _seeds("B", [21.5, 21.5, 21.5])
    monkeypatch.setattr(store, "load_records", lambda name, storage=None: records if name == "demo" else [])
    return records


def test_leaderboard_command_prints_and_writes(study, tmp_path, capsys):
    assert run_command(["leaderboard", "demo", "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert out.index("B nonsaturating") < out.index("A nonsaturating") and "ranked by mean fd_points" in out
    assert run_command(["leaderboard", "demo", "--output", str(tmp_path / "lb.csv")]) == 0
    assert pd.read_csv(tmp_path / "lb.csv")["rank"].tolist() == [1, 2]
    assert run_command(["leaderboard", "demo", "--budget", "--format", "csv", "--plot", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert pd.read_csv(io.StringIO(capsys.readouterr().out))["trials"].tolist() == [1, 2, 3, 4, 5]


def test_leaderboard_command_errors_are_one_line(study, capsys):
    assert run_command(["leaderboard", "empty"]) == 2
    assert run_command(["leaderboard", "demo", "--format", "parquet"]) == 2
    assert run_command(["leaderboard", "demo", "--by", "colour"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "no trial records" in err[0] and "--output" in err[1] and "colour" in err[2]


def test_a_failed_trial_without_a_primary_metric_counts_under_the_others():
    # the trainer's failed records name no primary metric (nothing was evaluated)
    records = [make_record("mlp", seed=0, value=2.0), make_record("mlp", seed=1, value=None, primary=None),
               make_record("dcgan", seed=0, value=3.0)]
    board = leaderboard(records)
    assert board.attrs["metric"] == "fd_points"
    assert board["failed"].tolist() == [0, 1] and board["n"].tolist() == [1, 1]


def test_ranking_by_a_metric_no_trial_has_is_an_error():
    with pytest.raises(GanbenchError, match="no trial has a metric 'fid'; the trials have: fd_points, modes"):
        leaderboard(_seeds("mlp", [1.0, 2.0]), metric="fid")
