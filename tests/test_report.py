"""Reports: the three files, their content, the round trip through compare, and a real browser."""
from __future__ import annotations

import base64
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from record_factory import make_record, run_command

from ganbench import store
from ganbench.api import GanbenchError
from ganbench.compare import compare_reports
from ganbench.report import jsonable, read_report, write_report
from ganbench.report_figures import pareto_front

CHROMIUM = Path("/usr/bin/chromium")


def _ring_samples(n: int = 64) -> dict:
    angles = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return {"kind": "points", "shape": [2], "values": np.stack([np.cos(angles), np.sin(angles)], 1).round(3).tolist()}


def _records(with_samples: bool = True) -> list[dict]:
    records = [make_record("A", seed=0, value=20.0, samples=_ring_samples() if with_samples else None),
               make_record("A", seed=1, value=None), make_record("A", seed=2, value=22.0)]
    records += [make_record("B", loss=loss, seed=s, value=21.5 + i, images_per_s=2000.0)
                for i, loss in enumerate(("hinge", "wgan")) for s in range(2)]
    records += [make_record("C", loss="hinge", seed=0, value=19.0, images_per_s=500.0)]
    return records


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(_records(), "demo", out), out


def test_report_writes_three_files(written):
    paths, out = written
    assert sorted(p.name for p in out.iterdir()) == ["report.html", "report.json", "report.md"]
    assert {k: v.name for k, v in paths.items()} == {"json": "report.json", "md": "report.md", "html": "report.html"}


def test_report_json_has_rows_seeds_protocols_and_the_study(written):
    report = read_report(written[0]["json"])
    assert report["study"] == "demo" and report["metric"] == "fd_points" and report["lower_is_better"] is True
    rows = {r["config"]: r for r in report["leaderboard"]}
    a = rows["A nonsaturating alternating"]
    assert a["seeds"] == {"0": 20.0, "1": None, "2": 22.0}
    assert (a["failed"], a["n"], a["mean"]) == (1, 2, 21.0)
    assert [r["rank"] for r in report["leaderboard"]] == [1, 2, 3, 4]
    assert report["leaderboard"][0]["config"] == "C hinge alternating"
    (protocol,) = report["protocols"].values()
    assert protocol["generated_count"] == 1000 and protocol["metric"] == "fd_points"
    assert len(report["trials"]) == 8 and "curve" not in report["trials"][0]
    assert report["budget"][-1]["expected_best"] == 19.0  # the best finite value of the study


def test_report_markdown_reads_like_a_summary(written):
    md = written[0]["md"].read_text()
    assert md.startswith("# ganbench report: demo")
    assert "| 1 | C hinge alternating | 19 |" in md
    assert "ranked by mean fd_points over seeds" in md
    assert "## Loss × architecture" in md  # loss and arch both vary
    assert "- A nonsaturating alternating (seed 1): failed — RuntimeError: boom" in md


def test_report_html_is_self_contained_with_every_figure(written):
    page = written[0]["html"].read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert len(sources) == 5  # curves, D accuracy, one sample grid, Pareto, budget
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    for source in sources:  # each embedded image decodes to a real PNG
        image = Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1])))
        assert image.format == "PNG" and min(image.size) >= 200
    assert not re.search(r'(href|src)="(https?:|file:|//)', page)
    for heading in ("Metric curves", "Discriminator accuracy", "Generated samples", "Throughput vs quality", "Budget curve"):
        assert f"<h2>{heading}</h2>" in page


def test_missing_samples_skip_their_figure_and_image_samples_are_drawn(tmp_path):
    page = write_report(_records(with_samples=False), "plain", tmp_path / "plain")["html"].read_text()
    assert "Generated samples" not in page and "Metric curves" in page
    digits = {"kind": "images", "shape": [1, 8, 8], "values": np.zeros((4, 1, 8, 8)).tolist()}
    records = [make_record("A", seed=0, value=1.0, samples=digits)]
    page = write_report(records, "digits", tmp_path / "digits")["html"].read_text()
    assert "Generated samples" in page


def test_report_json_round_trips_through_compare(written, capsys):
    path = str(written[0]["json"])
    assert run_command(["compare", path, path, "--format", "md"]) == 0
    report = read_report(path)
    comparison = compare_reports(report, report)
    assert comparison.exit_code == 0
    assert (comparison.rows["delta"].fillna(0) == 0).all()
    assert set(comparison.rows["verdict"]) == {"no change"}
    assert "No regression in 4 matched configuration(s)" in capsys.readouterr().out


def test_pareto_front_keeps_the_undominated_points():
    throughput = [100.0, 200.0, 300.0, 150.0, float("nan")]
    quality = [1.0, 2.0, 3.0, 2.5, 0.1]  # lower is better
    assert pareto_front(throughput, quality, True).tolist() == [True, True, True, False, False]
    assert pareto_front(throughput, quality, False).tolist() == [False, False, True, False, False]


def test_jsonable_turns_non_finite_numbers_into_null():
    assert jsonable({"a": np.float64("nan"), "b": [np.int64(3), float("inf")], 1: (2.5,)}) == {"a": None, "b": [3, None], "1": [2.5]}


def test_report_command_writes_under_results(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(store, "results_dir", lambda: tmp_path)
    monkeypatch.setattr(store, "load_records", lambda name, storage=None: _records(False) if name == "demo" else [])
    assert run_command(["report", "demo"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "demo" / f"report.{ext}") for ext in ("json", "md", "html")]
    assert json.loads((tmp_path / "demo" / "report.json").read_text())["study"] == "demo"
    assert run_command(["report", "nothing"]) == 2


def test_report_refuses_mixed_protocols_unless_forced(tmp_path):
    records = _records(False) + [make_record("D", seed=0, value=1.0, generated_count=10)]
    with pytest.raises(GanbenchError, match="generated_count"):
        write_report(records, "mixed", tmp_path)
    report = read_report(write_report(records, "mixed", tmp_path, force=True)["json"])
    assert len(report["protocols"]) == 2


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs headless Chromium at /usr/bin/chromium")
def test_report_html_renders_in_headless_chromium(written, tmp_path):
    html_path = written[0]["html"].resolve()
    shot = tmp_path / "page.png"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
           "--enable-logging=stderr", "--v=0", "--window-size=1280,2000", f"--screenshot={shot}", html_path.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 10_000
    # Console messages of the page are logged as 'CONSOLE(...)' lines naming its URL.
    page_errors = [line for line in done.stderr.splitlines()
                   if "CONSOLE" in line or ("report.html" in line and "ERROR" in line)]
    assert page_errors == []


def test_a_study_where_every_trial_failed_still_gets_a_report(tmp_path):
    records = [make_record("A", seed=s, value=None) for s in range(2)]
    paths = write_report(records, "allfail", tmp_path)
    md = paths["md"].read_text()
    assert "| 1 | A nonsaturating alternating | – |" in md
    assert md.count("None: no trial produced a finite value.") == 2  # budget curve and protocol
    report = read_report(paths["json"])
    assert report["budget"] == [] and report["leaderboard"][0]["failed"] == 2
    assert "data:image/png" not in paths["html"].read_text()
