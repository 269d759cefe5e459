"""compare: per-configuration deltas, seed-aware regression decisions, exit status for CI."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from record_factory import make_record, run_command
from scipy import stats as scipy_stats

from ganbench import store
from ganbench.api import GanbenchError
from ganbench.compare import compare_reports, decide, render, welch_p_value
from ganbench.report import build_report


def _report(study: str, configs: dict[str, list[float | None]], **kw) -> dict:
    records = [make_record(arch, seed=s, value=v, **kw) for arch, values in configs.items() for s, v in enumerate(values)]
    return build_report(records, study)


def _write(tmp_path, report: dict) -> str:
    path = tmp_path / f"{report['study']}.json"
    path.write_text(json.dumps(report))
    return str(path)


BASE = {"A": [10.0, 10.1, 9.9], "B": [20.0, 20.2, 19.8]}


@pytest.mark.parametrize("new_a, expected_exit, verdict", [
    ([12.0, 12.1, 11.9], 1, "regression"),      # +20%, far outside the seed noise
    ([8.0, 8.1, 7.9], 0, "improvement"),        # -20%
    ([10.1, 10.0, 10.2], 0, "no change"),       # +1%: within tolerance
])
def test_exit_status_follows_the_verdict(tmp_path, capsys, new_a, expected_exit, verdict):
    base, new = _report("base", BASE), _report("new", {**BASE, "A": new_a})
    assert run_command(["compare", _write(tmp_path, base), _write(tmp_path, new), "--format", "md"]) == expected_exit
    out = capsys.readouterr().out
    assert out.startswith("### ganbench compare: `base` → `new`")
    assert ("❌ **Regression" in out) == (expected_exit == 1)
    rows = compare_reports(base, new).rows.set_index(["config", "check"])
    assert rows.loc[("A nonsaturating alternating", "fd_points"), "verdict"] == verdict
    assert rows.loc[("B nonsaturating alternating", "fd_points"), "verdict"] == "no change"


def test_a_large_change_inside_the_seed_noise_is_not_a_regression():
    base = _report("base", {"A": [10.0, 14.0, 6.0]})
    new = _report("new", {"A": [11.0, 15.0, 7.0]})  # +10% in the mean, but p ~ 0.77
    row = compare_reports(base, new).rows.iloc[0]
    assert row["relative"] == pytest.approx(0.1) and row["p_value"] > 0.5
    assert row["verdict"] == "no change"


def test_with_one_seed_the_tolerance_alone_decides():
    lower = True
    assert decide(np.array([10.0]), np.array([10.4]), lower, 0.05, 0.05)["verdict"] == "no change"
    row = decide(np.array([10.0]), np.array([10.6]), lower, 0.05, 0.05)
    assert row["verdict"] == "regression" and math.isnan(row["p_value"])
    assert row["delta"] == pytest.approx(0.6) and row["relative"] == pytest.approx(0.06)
    assert decide(np.array([10.0]), np.array([9.0]), lower, 0.05, 0.05)["verdict"] == "improvement"


def test_welch_p_value_matches_the_textbook_formula():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([2.0, 4.0, 6.0])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (b.mean() - a.mean()) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert welch_p_value(a, b) == pytest.approx(2 * scipy_stats.t.sf(abs(t), df))
    assert welch_p_value(np.array([2.0, 2.0]), np.array([2.0, 2.0])) == 1.0
    assert welch_p_value(np.array([2.0, 2.0]), np.array([3.0, 3.0])) == 0.0


def test_throughput_is_checked_higher_is_better_and_only_on_the_same_device():
    base = _report("base", {"A": [10.0, 10.0]}, images_per_s=1000.0)
    slow = _report("new", {"A": [10.0, 10.0]}, images_per_s=500.0)
    row = compare_reports(base, slow).rows.set_index("check").loc["images_per_s"]
    assert row["verdict"] == "regression" and row["relative"] == pytest.approx(-0.5)
    assert compare_reports(base, slow, throughput_tolerance=math.inf).exit_code == 0
    for trial in slow["trials"]:
        trial["environment"]["device_name"] = "NVIDIA H200"
    assert compare_reports(base, slow).rows.set_index("check").loc["images_per_s", "verdict"] == "not compared"


def test_more_failures_are_a_regression():
    base = _report("base", {"A": [10.0, 10.0, 10.0]})
    new = _report("new", {"A": [10.0, None, 10.0]})
    comparison = compare_reports(base, new)
    row = comparison.rows.set_index("check").loc["failure rate"]
    assert row["verdict"] == "regression" and row["new_mean"] == pytest.approx(1 / 3)
    assert comparison.exit_code == 1


def test_all_seeds_failing_is_a_regression():
    comparison = compare_reports(_report("base", {"A": [10.0, 10.0]}), _report("new", {"A": [None, None]}))
    assert comparison.rows.set_index("check").loc["fd_points", "verdict"] == "regression"


def test_unmatched_configurations_are_listed_not_judged():
    comparison = compare_reports(_report("base", {"A": [1.0], "B": [2.0]}), _report("new", {"A": [1.0], "C": [9.0]}))
    assert comparison.only_base == ["B nonsaturating alternating"]
    assert comparison.only_new == ["C nonsaturating alternating"]
    assert comparison.exit_code == 0
    assert "Only in BASE (not compared): B nonsaturating alternating" in render(comparison, "text")


def test_incompatible_protocols_exit_2(tmp_path, capsys):
    base = _report("base", BASE)
    new = _report("new", BASE, generated_count=500)
    assert run_command(["compare", _write(tmp_path, base), _write(tmp_path, new)]) == 2
    err = capsys.readouterr().err
    assert "incompatible protocols" in err and "generated_count: 1000 vs 500" in err and len(err.splitlines()) == 1


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    good = _write(tmp_path, _report("base", BASE))
    (tmp_path / "junk.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"rows": []}))
    disjoint = _write(tmp_path, _report("disjoint", {"Z": [1.0]}))
    cases = [
        ([str(tmp_path / "missing.json"), good], "no such report"),
        ([good, str(tmp_path / "junk.json")], "cannot read report"),
        ([good, str(tmp_path / "other.json")], "is not a ganbench report.json"),
        ([good, disjoint], "no configuration in common"),
        ([good, good, "--metric", "nope"], "has no metric 'nope'"),
        ([good, good, "--alpha", "2"], "--alpha"),
    ]
    for argv, message in cases:
        assert run_command(["compare", *argv]) == 2, message
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_compare_reads_study_names_through_the_store(monkeypatch, tmp_path, capsys):
    studies = {"old": [make_record("A", seed=s, value=10.0) for s in range(2)],
               "fresh": [make_record("A", seed=s, value=13.0) for s in range(2)]}

    def load_records(name, storage=None):
        if name not in studies:
            raise GanbenchError(f"no study {name!r}")
        return studies[name]

    monkeypatch.setattr(store, "load_records", load_records)
    assert run_command(["compare", "old", "fresh", "--format", "text"]) == 1
    assert "Regression: 1 check(s) got worse" in capsys.readouterr().out
    assert run_command(["compare", "old", "unknown"]) == 2
    assert "neither a report.json nor a readable study" in capsys.readouterr().err


def test_output_file_holds_the_markdown(tmp_path, capsys):
    report = _write(tmp_path, _report("base", BASE))
    out = tmp_path / "comment.md"
    assert run_command(["compare", report, report, "--format", "md", "--output", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "✅ **No regression in 2 matched configuration(s)**" in text
    assert "| configuration | check | base | new | delta | delta % | p | verdict |" in text


def test_the_example_workflow_uses_valid_commands():
    """The CI example in examples/ must keep working with this CLI (docs/ci.md links it)."""
    import argparse
    import shlex
    from pathlib import Path

    import yaml

    from ganbench import compare, report

    workflow = yaml.safe_load((Path(__file__).parents[1] / "examples" / "github-workflow.yml").read_text())
    scripts = [step.get("run", "") for step in workflow["jobs"]["benchmark"]["steps"]]
    commands = [line for script in scripts for line in script.replace("\\\n", " ").splitlines()
                if line.strip().startswith(("ganbench compare", "ganbench report"))]
    assert len(commands) == 2
    parser = argparse.ArgumentParser(prog="ganbench", exit_on_error=False)
    sub = parser.add_subparsers(dest="command", required=True)
    compare.register_cli(sub)
    report.register_cli(sub)
    for command in commands:
        args = parser.parse_args(shlex.split(command)[1:])
        assert args.func in (compare.run_cli, report.run_cli)
    assert args.throughput_tolerance == 0.5 and args.format == "md" and args.output == "compare.md"


def test_with_two_seeds_a_side_the_tolerance_decides_so_a_tenfold_regression_is_caught():
    # a Welch test on 2 + 2 seeds whose spread grows with the mean gives p ~ 0.1: it would pass this
    base = _report("base", {"A": [4.4, 6.8]})
    new = _report("new", {"A": [44.0, 68.0]})
    row = compare_reports(base, new).rows.set_index("check").loc["fd_points"]
    assert row["verdict"] == "regression" and math.isnan(row["p_value"]) and row["relative"] == pytest.approx(9.0)
