"""The run report in the browser (docs/report.md): the figures it computes, worked out by hand from
known confusion matrices; what the page holds; a missing or damaged run folder; its size; and the
page opened in a real headless browser (Debian's chromium): no error, every chart drawn, the 3-D
view there, a screenshot kept in test-artifacts/."""

import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from css.errors import CSSError
from css.htmlreport.forgetting import forgetting_matrix, learned_steps, row_normalised, where_old_went
from css.htmlreport.page import write_report

from _report_fixtures import write_run

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
NAMES = ["background", "a", "b", "c"]
STEP0 = [[8, 1, 1], [1, 8, 1], [0, 2, 8]]
STEP1 = [[8, 0, 0, 2], [2, 5, 1, 2], [0, 1, 9, 0], [1, 0, 0, 9]]
PERFECT1 = [[10, 0, 0, 0], [0, 10, 0, 0], [0, 0, 10, 0], [0, 0, 0, 10]]


def iou(matrix, c):
    """TP / (GT + Pred - TP) of class c, by hand."""
    m = np.asarray(matrix)
    return m[c, c] / (m[c].sum() + m[:, c].sum() - m[c, c])


def test_forgetting_figures_by_hand():
    entries = [{"step": 0, "num_classes": 3, "iou": [0.9, 0.8, 0.6]},
               {"step": 1, "num_classes": 5, "iou": [0.85, 0.5, None, 0.7, 0.2]},
               {"step": 2, "num_classes": 5, "iou": [0.8, 0.4, 0.3, 0.6, 0.1]}]
    assert learned_steps(entries) == [0, 0, 0, 1, 1]
    values, change = forgetting_matrix(entries)
    assert values[3] == [None, 0.7, 0.6] and values[2] == [0.6, None, 0.3]
    assert [round(v, 6) if v is not None else None for v in change[1]] == [0.0, -0.3, -0.4]
    assert [round(v, 6) if v is not None else None for v in change[2]] == [0.0, None, -0.3]
    assert [round(v, 6) if v is not None else None for v in change[4]] == [None, 0.0, -0.1]
    assert row_normalised(np.array([[2, 2, 0], [0, 0, 0], [1, 1, 2]])) == [[0.5, 0.5, 0.0], [None] * 3,
                                                                          [0.25, 0.25, 0.5]]
    # old classes 1 and 2 (num_old 3) of a 4-channel step: class 1 keeps 5 of 10, gives 2 to background
    # and 2 to the new class 3; class 2 has no ground truth and is left out
    went = where_old_went(np.array([[9, 0, 0, 1], [2, 5, 1, 2], [0, 0, 0, 0], [0, 0, 0, 4]]), 3)
    assert went == [{"channel": 1, "kept": 0.5, "background": 0.2, "new": 0.2}]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_runs")
    a = write_run(root / "img_s0", [STEP0, STEP1], NAMES, seed=0)
    b = write_run(root / "img_s1", [STEP0, PERFECT1], NAMES, seed=1)
    c = write_run(root / "pts", [STEP0, STEP1], NAMES, modality="pointcloud", background=False, samples="xyz",
                  method="ft")
    return root, [a, b, c]


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "out"
    index = write_report(out, [str(p) for p in runs[1]])
    return out, index.read_text()


def chunk(page: str, div_id: str) -> str:
    """The HTML of one chart: its div and the script that draws it."""
    start = page.index(f'id="{div_id}"')
    return page[start: page.index("</script>", start)]


def test_the_page_holds_every_run_and_its_figures(report, runs):
    out, page = report
    for slug in ("img_s0", "img_s1", "pts"):
        assert f'id="run-{slug}"' in page
    for div in ("curves-img_s0", "forgetting-img_s0", "confusion-img_s0-0", "confusion-img_s0-1", "methods-0",
                "methods-1", "points-pts-1-0"):
        assert f'id="{div}"' in page, div
    # what ran, from results.json's metadata
    for text in ("<td>processes</td><td>2</td>", "<td>global batch</td><td>24</td>", "<td>precision</td><td>fp16</td>",
                 "<td>commit</td><td>abc123</td>", "<td>protocol</td><td>fixed</td>", "lgkd (loss_kd 1.0)"):
        assert text in page, text
    # the confusion matrix, row-normalised: 2 of the 10 'a' pixels went to background at step 1
    assert "ground truth a (1) predicted as background (0): 20.00 % (2 elements)" in chunk(page, "confusion-img_s0-1")
    # forgetting: a fell from 8/13 at step 0 to 5/11 at step 1
    change = 100 * (iou(STEP1, 1) - iou(STEP0, 1))
    assert f"a (1) at step 1: IoU {100 * iou(STEP1, 1):.2f}, {change:+.2f} since step 0" in \
        chunk(page, "forgetting-img_s0")
    # where the old classes went at step 1: a kept 50 %, 20 % to background, 20 % to the new class c
    assert "<td>a (1)</td><td>50.00</td><td>20.00</td><td>20.00</td>" in page
    # point clouds: the synthetic channel 0 is no class, so the forgetting matrix leaves it out
    assert "background (0)" not in chunk(page, "forgetting-pts") and "background (0)" in chunk(page, "forgetting-img_s0")
    # the seed group: mean and sample std of the two runs' final all (mean IoU over the 4 classes)
    alls = [statistics.fmean(iou(m, c) for c in range(4)) for m in (STEP1, PERFECT1)]
    assert f"{100 * statistics.fmean(alls):.2f} ± {100 * statistics.stdev(alls):.2f}" in page
    # the sample picture travels with the report; plotly.js is there, so it opens offline
    copied = out / "assets" / "img_s0" / "step1" / "sample0.png"
    assert copied.read_bytes() == (runs[1][0] / "step1" / "samples" / "sample0.png").read_bytes()
    assert (out / "assets" / "plotly.min.js").stat().st_size > 1_000_000
    assert "https://" not in page.split("<body>")[0]  # no script or style fetched from the network


def cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "css.report", *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=300)


def test_a_missing_or_damaged_run_is_named_and_nothing_is_written(runs, tmp_path):
    root, folders = runs
    out = tmp_path / "out"
    proc = cli("--html", out, folders[0], tmp_path / "nope")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"run folder {tmp_path / 'nope'} does not exist" in proc.stderr and not out.exists()
    damaged = tmp_path / "damaged"
    shutil.copytree(folders[0], damaged)
    (damaged / "step1" / "confusion.npy").write_bytes(b"not a matrix")
    proc = cli("--html", out, folders[0], damaged)
    assert proc.returncode == 2 and f"{damaged / 'step1' / 'confusion.npy'} cannot be read" in proc.stderr
    assert not out.exists() and not any(p.name.startswith(".out-") for p in tmp_path.iterdir())
    # a report written before stays as it was when a later one fails
    assert cli("--html", out, folders[0]).returncode == 0
    before = (out / "index.html").read_bytes()
    assert cli("--html", out, damaged).returncode == 2
    assert (out / "index.html").read_bytes() == before
    # a folder that is not a report is never overwritten
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    proc = cli("--html", mine, folders[0])
    assert proc.returncode == 2 and "is not a css report folder" in proc.stderr
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
    with pytest.raises(CSSError, match="has no results.json"):
        write_report(tmp_path / "x", [str(tmp_path)])


def test_a_run_without_the_kept_data_says_how_to_add_it(runs, tmp_path):
    old = tmp_path / "old_run"
    shutil.copytree(runs[1][0], old)
    (old / "step1" / "confusion.npy").unlink()
    shutil.rmtree(old / "step1" / "samples")
    page = write_report(tmp_path / "out", [str(old)]).read_text()
    assert f"step 1 has no confusion matrix (the run predates them): python -m css.evaluate {old} --write" in page
    assert 'id="confusion-old_run-0"' in page and 'id="confusion-old_run-1"' not in page


REPORT_LIMIT_MB = 8.5  # docs/report.md#size


def test_a_six_step_voc_shaped_report_stays_small(tmp_path):
    """15-1 on VOC's 21 classes: 16 channels, then one more per step; four 240-pixel test pictures a
    step, as a run keeps them."""
    names = ["background"] + [f"class{c}" for c in range(1, 21)]
    rng = np.random.default_rng(0)
    matrices = []
    for channels in range(16, 22):
        m = rng.integers(0, 50, (channels, channels)) + np.diag(rng.integers(500, 5000, channels))
        matrices.append(m.tolist())
    run = write_run(tmp_path / "voc15-1", matrices, names, panel=(240, 240), count=4)
    out = tmp_path / "out"
    write_report(out, [str(run)])
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    plotly_js = (out / "assets" / "plotly.min.js").stat().st_size
    print(f"6-step VOC-shaped report: {total / 1e6:.2f} MB, of which plotly.js {plotly_js / 1e6:.2f} MB")
    assert total < REPORT_LIMIT_MB * 1e6


PROBE = """<script>
window.__problems = [];
window.addEventListener("error", e => __problems.push("error: " + e.message));
window.addEventListener("unhandledrejection", e => __problems.push("rejection: " + e.reason));
const __error = console.error;
console.error = (...args) => { __problems.push("console.error: " + args.join(" ")); __error(...args); };
window.addEventListener("load", () => setTimeout(() => {
  const charts = [...document.querySelectorAll(".plotly-graph-div")].map(d => ({
    id: d.id, drawn: !!d._fullLayout, traces: (d._fullData || []).length,
    svg: d.querySelectorAll(".main-svg").length, canvas: d.querySelectorAll("canvas").length,
    heatmaps: d.querySelectorAll(".hm image").length, bars: d.querySelectorAll(".bars path").length,
    lines: d.querySelectorAll(".scatterlayer .trace").length}));
  const images = [...document.images].map(i => ({src: i.getAttribute("src"), width: i.naturalWidth}));
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({problems: __problems, charts, images});
  document.body.appendChild(pre);
}, 3000));
</script>"""


def chromium(*args: str) -> subprocess.CompletedProcess:
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is needed (scripts/setup.sh installs it)"
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                           "--hide-scrollbars", "--virtual-time-budget=30000", *args],
                          capture_output=True, text=True, timeout=240)


def test_the_report_in_a_headless_browser(report):
    out, page = report
    probe = out / "probe.html"  # the page with a script that records errors and what was drawn
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    proc = chromium("--dump-dom", probe.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    found = json.loads(proc.stdout.split('<pre id="probe">')[1].split("</pre>")[0].replace("&quot;", '"')
                       .replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">"))
    assert found["problems"] == []
    charts = {c["id"]: c for c in found["charts"]}
    assert len(charts) == page.count('class="plotly-graph-div"')
    for chart in charts.values():
        assert chart["drawn"] and chart["traces"] > 0 and chart["svg"] > 0, chart
    for div in ("forgetting-img_s0", "confusion-img_s0-1"):
        assert charts[div]["heatmaps"] >= 1, charts[div]
    assert charts["methods-0"]["bars"] >= 4 and charts["curves-img_s0"]["lines"] >= 3
    assert charts["points-pts-1-0"]["canvas"] >= 1  # the 3-D view draws with WebGL
    assert found["images"] and all(i["width"] > 0 for i in found["images"])
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "html-report.png"
    shot.unlink(missing_ok=True)
    assert chromium("--window-size=1300,4000", f"--screenshot={shot}", (out / "index.html").as_uri()).returncode == 0
    assert shot.stat().st_size > 20_000
    probe.unlink()
