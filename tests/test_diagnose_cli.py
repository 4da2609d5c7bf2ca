"""``ctxrely score-data`` end to end on a saved tiny model: every format, resume after a crash or a
partial shard, bad rows, settings mismatch, rank partitioning (and a real 2-process accelerate run)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from ctxrely.cli.main import main  # noqa: E402
from ctxrely.data.records import write_rows  # noqa: E402
from ctxrely.data.sft import load_sft  # noqa: E402
from ctxrely.diagnose import shards as shards_mod  # noqa: E402
from test_diagnose_rows import CASES, QA, make_rows, write_case  # noqa: E402


def _opts(opts: dict) -> list[str]:
    out = []
    if "context_field" in opts:
        out += ["--context-field", opts["context_field"]]
    if "context_template" in opts:
        out += ["--context-template", opts["context_template"]]
    return out


def _score(model_dir, data, out, *extra) -> int:
    return main(["score-data", "--model", str(model_dir), "--data", str(data), "--out", str(out), "--no-progress",
                 *extra])


@pytest.mark.parametrize("name,kind,opts", CASES, ids=[c[0] for c in CASES])
def test_score_data_every_format(tmp_path, tiny_model_dir, name, kind, opts):
    data = write_case(tmp_path, name, kind)
    out = tmp_path / "scores"
    assert _score(tiny_model_dir("llama"), data, out, "--shard-size", "3", *_opts(opts)) == 0
    rows = [json.loads(x) for x in (out / "scores.jsonl").read_text().splitlines()]
    originals = make_rows(kind)
    assert len(rows) == 8 and sorted(os.listdir(out / "shards")) == [f"shard-0000{k}.jsonl" for k in range(3)]
    for r, orig in zip(rows, originals, strict=True):
        if not name.endswith(".csv"):
            assert r["row"] == orig
        assert r["cls"] in ("C", "C+S", "S") and r["nll_with"] > 0 and 0 < r["attn_score"] <= 1
    assert [r["cls"] == "S" for r in rows] == [not c for c, _, _ in QA]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n"] == 8 and summary["class_counts"]["S"] == 2
    assert len(summary["most_context_critical"]) == 6 and summary["most_context_critical"][0]["prompt"]
    for png in summary["histograms"]:
        assert (out / png).stat().st_size > 1000 and (out / png).with_suffix(".svg").exists()
    assert "hist_nll.png" in summary["histograms"]


def test_resume_skips_finished_shards_and_redoes_partial(tmp_path, tiny_model_dir, monkeypatch):
    model = tiny_model_dir("llama")
    data = write_case(tmp_path, "a.jsonl", "alpaca")
    out = tmp_path / "s"
    calls: list[int] = []
    crash = [True]
    real = shards_mod.score_chunk

    def crash_on_second(model_, tok, chunk, cfg):
        calls.append(len(chunk))
        if len(calls) == 2 and crash[0]:
            crash[0] = False
            raise RuntimeError("killed")
        return real(model_, tok, chunk, cfg)

    monkeypatch.setattr(shards_mod, "score_chunk", crash_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        _score(model, data, out, "--shard-size", "3")
    assert [p.name for p in sorted((out / "shards").glob("*.jsonl"))] == ["shard-00000.jsonl"]
    first = (out / "shards" / "shard-00000.jsonl").stat().st_mtime_ns
    calls.clear()
    assert _score(model, data, out, "--shard-size", "3") == 0
    assert calls == [3, 2]  # shard 0 was kept, shards 1 and 2 scored
    assert (out / "shards" / "shard-00000.jsonl").stat().st_mtime_ns == first
    full = (out / "scores.jsonl").read_text()
    # a partially written shard (cut mid-file) and a leftover temp file are redone, the rest kept
    s1 = out / "shards" / "shard-00001.jsonl"
    s1.write_text(s1.read_text().splitlines()[0] + "\n")
    (out / "shards" / "shard-00002.jsonl.tmp").write_text('{"id": "6"')
    calls.clear()
    assert _score(model, data, out, "--shard-size", "3") == 0
    assert calls == [3]
    assert (out / "scores.jsonl").read_text() == full


def test_bad_row_names_line_and_field_and_keeps_scores(tmp_path, tiny_model_dir, capsys, monkeypatch):
    model = tiny_model_dir("llama")
    rows = make_rows("alpaca")
    data = write_rows(tmp_path / "a.jsonl", rows)
    out = tmp_path / "s"
    assert _score(model, data, out, "--shard-size", "3") == 0
    before = {p.name: p.read_text() for p in (out / "shards").iterdir()}
    rows[6]["output"] = ""
    write_rows(data, rows)
    assert _score(model, data, out, "--shard-size", "3") == 2
    err = capsys.readouterr().err
    assert "line 7" in err and "'output'" in err and "empty" in err
    assert {p.name: p.read_text() for p in (out / "shards").iterdir()} == before
    # fixing the row rescores only the shard that holds it
    rows[6]["output"] = "Herat, of course"
    write_rows(data, rows)
    calls: list[int] = []
    real = shards_mod.score_chunk
    monkeypatch.setattr(shards_mod, "score_chunk", lambda m, t, c, cfg: (calls.append(len(c)), real(m, t, c, cfg))[1])
    assert _score(model, data, out, "--shard-size", "3") == 0
    assert calls == [2]


def test_skip_bad_and_settings_mismatch(tmp_path, tiny_model_dir, capsys):
    model = tiny_model_dir("llama")
    rows = make_rows("alpaca")
    rows[2]["instruction"] = None
    data = write_rows(tmp_path / "a.jsonl", rows)
    out = tmp_path / "s"
    assert _score(model, data, out, "--skip-bad", "--no-attention") == 0
    assert len((out / "scores.jsonl").read_text().splitlines()) == 7
    assert "line 3" in (out / "errors.jsonl").read_text()
    assert _score(model, data, out, "--skip-bad", "--template", "chat") == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "template: 'auto' -> 'chat'" in err
    assert _score(model, data, out, "--skip-bad", "--template", "chat", "--overwrite") == 0


def test_ranks_take_their_shards(tmp_path, tiny_llama):
    model, tok = tiny_llama
    data = load_sft(write_case(tmp_path, "a.jsonl", "alpaca"))
    cfg = shards_mod.ScoreConfig(model="tiny", data="a.jsonl", shard_size=2, attention=False)
    out = tmp_path / "s"
    shards_mod.check_meta(out, cfg)
    assert shards_mod.run_shards(model, tok, data.examples, out, cfg, rank=1, world_size=2, progress=False) == [1, 3]
    assert shards_mod.join_shards(out, data.examples, cfg) is None  # rank 0's shards are missing
    assert shards_mod.run_shards(model, tok, data.examples, out, cfg, rank=0, world_size=2, progress=False) == [0, 2]
    rows = shards_mod.join_shards(out, data.examples, cfg)
    assert [r["id"] for r in rows] == [str(i) for i in range(8)]


def test_config_rejects_unknown_keys():
    from ctxrely.errors import ConfigError

    with pytest.raises(ConfigError, match="score-data settings, field .shard_sise.: unknown key .did you mean .shard_size."):
        shards_mod.ScoreConfig.from_dict({"model": "m", "data": "d", "shard_sise": 3})


@pytest.mark.slow
def test_accelerate_two_processes(tmp_path, tiny_model_dir):
    if shutil.which("accelerate", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("accelerate is not installed")
    data = write_case(tmp_path, "a.jsonl", "alpaca")
    out = tmp_path / "s"
    cmd = [str(Path(sys.executable).parent / "accelerate"), "launch", "--cpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "ctxrely.cli.main",
           "score-data", "--model", str(tiny_model_dir("llama")), "--data", str(data), "--out", str(out),
           "--shard-size", "2", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len((out / "scores.jsonl").read_text().splitlines()) == 8
    assert len(list((out / "shards").glob("*.jsonl"))) == 4
