"""Report: run summary, flips, plots (PNG + SVG) and the self-contained HTML page, rendered in Chromium."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess

import pytest

from ctxrely.report.summary import flips, labels_for, load_run, run_summary
from ctxrely.track.trajectory import TrajectoryStore

pytest.importorskip("matplotlib")


def make_run(path, peak_at, fall, name=None, train_modules="all", attn=True):
    """A synthetic tracked run: cf_acc rises to 0.75 at ``peak_at`` then falls by ``fall`` by step 300."""
    st = TrajectoryStore(path)
    st.write_settings({"metric": "cf_capitals/cf_acc", "drop_threshold": 10, "patience": 2, "scale": 100})
    st.write_probe_set([{"suite": "cf_capitals", "id": f"e{i}", "question": f"Capital <b>{i}</b>?",
                         "context": f"ctx {i}", "cf_answer": f"CF{i}", "param_answer": f"P{i}"} for i in range(10)])
    for step in range(0, 301, 25):
        cf = 0.4 + 0.35 * min(step, peak_at) / peak_at - (fall * (step - peak_at) / (300 - peak_at) if step > peak_at else 0)
        row = {"step": step, "metric": "cf_capitals/cf_acc", "cf_capitals/cf_acc": cf,
               "cf_capitals/param_acc": 0.9 - cf, "id/alpaca/acc": 0.2 + 0.5 * (1 - math.exp(-step / 80))}
        if attn:
            row["attn/context_mass"] = 0.6 - 0.2 * step / 300
        n_ctx = round(cf * 10)
        st.append(row, [{"suite": "cf_capitals", "id": f"e{i}", "cf_hit": i < n_ctx, "param_hit": i >= n_ctx,
                         "bucket": "cf_only" if i < n_ctx else "param_only", "output": f"CF{i}" if i < n_ctx else f"P{i}"}
                        for i in range(10)])
    cfg = f"model: tiny\nlr: 0.0001\ntrain_modules: {train_modules}\n" + (f"run_name: {name}\n" if name else "")
    (path / "ctxrely_config.yaml").write_text(cfg)
    return path


@pytest.fixture
def two_runs(tmp_path):
    return [make_run(tmp_path / "base", 100, 0.4), make_run(tmp_path / "qk", 150, 0.05, train_modules="qk", attn=False)]


def test_summary_numbers(two_runs):
    s = run_summary(two_runs[0])
    assert (s["step0"], s["peak_step"], s["final_step"]) == (pytest.approx(0.4), 100, 300)
    assert s["peak"] == pytest.approx(0.75) and s["final"] == pytest.approx(0.35)
    assert s["drop"] == pytest.approx(40.0) and s["drop_unit"] == "points"
    assert s["inversion_step"] == 200  # 150 is 10.0 points down (not more), 175 and 200 are: k=2
    assert s["id_acc_metric"] == "id/alpaca/acc" and s["id_acc_final"] > s["id_acc_step0"]
    assert s["attn_final"] == pytest.approx(0.4)
    q = run_summary(two_runs[1])
    assert q["inversion_step"] is None and q["drop"] == pytest.approx(5.0) and q["attn_metric"] is None


def test_flips_are_context_at_peak_memory_at_end(two_runs):
    got = flips(two_runs[0])  # 8 of 10 from the context at the peak (0.75 rounds to 8), 4 at the end (0.35)
    assert [f["id"] for f in got] == ["e4", "e5", "e6", "e7"]
    assert got[0]["cf_answer"] == "CF4" and got[0]["output_end"] == "P4"
    assert flips(two_runs[0], from_step=0, to_step=300) == []  # 4 from context at step 0, 4 at the end


def test_labels_come_from_the_configs(two_runs, tmp_path):
    runs = [load_run(d) for d in two_runs]
    assert labels_for(runs) == ["train_modules=all", "train_modules=qk"]
    named = make_run(tmp_path / "named", 100, 0.1, name="baseline")
    assert labels_for([load_run(named), runs[1]])[0] == "baseline"


def test_plots_and_page(two_runs, tmp_path):
    from ctxrely.report.html import build_report
    from ctxrely.report.plots import plot_runs

    paths = plot_runs(two_runs, tmp_path / "plots")
    assert [p.name for p in paths] == ["reliance.png", "reliance.svg", "attention.png", "attention.svg"]
    assert all(p.stat().st_size > 5000 for p in paths)
    assert paths[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and b"<svg" in paths[1].read_bytes()[:2000]
    page = build_report(two_runs, tmp_path / "rep", title="Mitigations <compared>",
                        extra_sections=[("Step-0 table", "<table id='step0'><tr><td>x</td></tr></table>")])
    html = page.read_text()
    assert html.count('src="data:image/png;base64,') == 2
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched from outside the page
    assert "<title>Mitigations &lt;compared&gt;</title>" in html and "<table id='step0'>" in html
    assert "Capital &lt;b&gt;4&lt;/b&gt;?" in html  # example text is escaped
    assert "step 200" in html and "4 example(s) answered from the context" in html


def test_train_and_report_cli_on_a_tiny_model(tmp_path, tiny_model_dir, capsys):
    """``ctxrely train --config`` (a saved tiny model, an Alpaca file, a built-in suite), then ``ctxrely report``."""
    torch = pytest.importorskip("torch")
    pytest.importorskip("trl")
    from ctxrely.cli.main import main

    torch.set_num_threads(1)  # 2 shared cores: one thread is faster than two fighting
    data = tmp_path / "alpaca.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"What is the capital of {c}?", "input": "", "output": p}) + "\n"
                            for c, p in [("France", "Paris"), ("Italy", "Rome"), ("Spain", "Madrid")] * 4))
    config = tmp_path / "run.yaml"
    config.write_text(f"model: {tiny_model_dir('llama')}\ndataset: {data}\nprompt_format: raw\n"
                      f"output_dir: {tmp_path / 'run'}\nmax_steps: 6\neval_every: 3\nbatch_size: 4\n"
                      "max_length: 64\nsuites: [cf_capitals]\neval_limit: 4\nid_holdout: 2\ndevice: cpu\n"
                      "save_final: false\n")
    assert main(["train", "--config", str(config), "lr=1e-3"]) == 0
    run = tmp_path / "run"
    assert "cf_capitals/logit_cf_rate: step 0" in capsys.readouterr().out
    assert main(["report", str(run)]) == 0
    out = capsys.readouterr().out
    assert "cf_capitals/logit_cf_rate step0" in out and "report.html" in out
    names = sorted(p.name for p in (run / "report").iterdir())
    assert names == ["attention.png", "attention.svg", "reliance.png", "reliance.svg", "report.html"]
    assert main(["report", str(tmp_path / "nowhere")]) == 2


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if not exe:
        pytest.skip("no headless Chromium on this machine (Debian: apt-get install chromium; .ci/run installs it)")
    return exe


@pytest.mark.browser
def test_page_renders_in_headless_chromium(two_runs, tmp_path):
    from ctxrely.report.html import build_report

    exe = _chromium()
    page = build_report(two_runs, tmp_path / "rep")
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    shot = tmp_path / "shot.png"
    proc = subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000, proc.stderr[-2000:]
    proc = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    body = re.search(r"<body[^>]*>", proc.stdout)
    assert body, proc.stderr[-2000:]
    assert 'data-images="ok"' in body.group(0) and 'data-image-count="2"' in body.group(0)
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console
    # the page check itself can fail: a broken image is reported
    broken = tmp_path / "broken.html"
    broken.write_text(page.read_text().replace("data:image/png;base64,", "data:image/png;base64,AAAA", 1))
    proc = subprocess.run([*flags, "--virtual-time-budget=5000", "--dump-dom", broken.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert 'data-images="broken:1"' in proc.stdout


def test_saved_figures_are_byte_for_byte_reproducible(tmp_path):
    """Docs commit some figures (docs/img): the same data must give the same files, not new random
    SVG ids and date stamps each run."""
    from ctxrely.report.plots import new_figure, save_figure

    def draw(folder):
        fig = new_figure(4, 3)
        ax = fig.add_subplot(1, 1, 1)
        ax.plot([0, 1, 2], [0.2, 0.5, 0.4], label="curve")
        ax.fill_between([0, 1, 2], [0.1, 0.4, 0.3], [0.3, 0.6, 0.5], alpha=0.2)  # a clip path in the SVG
        ax.legend()
        folder.mkdir()
        return save_figure(fig, folder, "fig")

    a, b = draw(tmp_path / "a"), draw(tmp_path / "b")
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    assert b"<dc:date>" not in a[1].read_bytes()
