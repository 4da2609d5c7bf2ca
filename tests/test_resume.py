"""The one resume log (``ctxrely.engine.resume``) under every command that appends to it
(``eval``, ``nih``, ``attention``), run in-process through the CLI on saved tiny models.

Each scenario starts from a run "killed" after its last batch (the partial file is complete but not
yet removed), marks the rows there, damages the file the way a crash or a hand edit would, reruns,
and checks which rows came back from the file (marked) and which were computed again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ctxrely.cli.main import main
from ctxrely.engine.resume import LOCK, ResumeError, ResumeLog, RunLock, append_lines, iter_rows, repair_tail

MARK = "MARKER"


# -- the module on its own ---------------------------------------------------------------------------

def test_torn_tail_is_cut_before_the_next_append(tmp_path):
    p = tmp_path / "x.partial.jsonl"
    p.write_text('{"config_hash": "h"}\n{"k": 1}\n{"k": 2, "v": "ha', encoding="utf-8")
    append_lines(p, [{"k": 3}])
    assert p.read_text(encoding="utf-8") == '{"config_hash": "h"}\n{"k": 1}\n{"k": 3}\n'
    assert repair_tail(p) == 0  # nothing torn: nothing cut


def test_damaged_rows_are_skipped_with_one_line_each(tmp_path, caplog):
    log = ResumeLog(tmp_path, "h")
    log.path.write_text('{"config_hash": "h"}\n{"suite": "s", "id": "1"}\n{"id": "2"}\n[1, 2]\nGARBAGE\n'
                        '{"suite": ["s"], "id": "3"}\n{"suite": "s", "id": "4"}\n', encoding="utf-8")
    assert sorted(log.load()) == [("s", "1"), ("s", "4")]
    assert caplog.text.count("line ") == 4 and "line 3: damaged row (no field 'suite')" in caplog.text


def test_lock_refuses_a_live_process_and_takes_over_a_dead_one(tmp_path):
    busy = f"in use by another ctxrely run \\(pid {os.getpid()}\\)"
    with RunLock(tmp_path), pytest.raises(ResumeError, match=busy):
        RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK).exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / LOCK).write_text(str(dead.pid))
    with RunLock(tmp_path) as lock:
        assert lock.path.read_text() == str(os.getpid())


def test_other_settings_are_kept_aside_and_come_back(tmp_path):
    with ResumeLog(tmp_path, "aaa") as log:
        log.append([{"suite": "s", "id": "1"}])
    with ResumeLog(tmp_path, "bbb") as log:  # other settings: the old rows move aside, not away
        log.append([{"suite": "s", "id": "2"}])
    assert (tmp_path / "examples.partial.aaa.jsonl").is_file()
    assert sorted(ResumeLog(tmp_path, "aaa").load()) == [("s", "1")]
    ResumeLog(tmp_path, "bbb").clear()
    assert sorted(p.name for p in tmp_path.glob("*.jsonl")) == ["examples.partial.aaa.jsonl"]


# -- every command that resumes ----------------------------------------------------------------------

GOOD = [{"context": f"In 2001 the capital of {c} moved to {n}.", "question": f"What is the capital of {c}?",
         "answer": n, "memory_answer": o} for c, n, o in
        [("France", "Lyon", "Paris"), ("Spain", "Seville", "Madrid"), ("Italy", "Milan", "Rome")]]


@dataclass
class Command:
    """How to run one resuming command and read which of its rows came from the partial file."""

    name: str
    stem: str
    argv: Callable[[Path, Path, Path, str], list[str]]  # (model, out, data folder, template)
    finals: Callable[[Path], dict[Any, Any]]  # key -> the value a marked row carries
    key: Callable[[dict[str, Any]], Any]  # a partial row's key (None: a row not marked)
    mark: Callable[[dict[str, Any]], None]
    drop: str  # a field whose loss damages a row


def _jsonl(p: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines()]


def _eval_argv(model: Path, out: Path, data: Path, template: str) -> list[str]:
    return ["eval", "--model", str(model), "--out", str(out), "--data", str(data / "caps.json"), "--mode", "both",
            "--max-new-tokens", "4", "--n-boot", "10", "--batch-size", "1", "--no-progress",
            "--format", "chat" if template == "chat" else "raw"]


def _nih_argv(model: Path, out: Path, data: Path, template: str) -> list[str]:
    return ["nih", "--model", str(model), "--out", str(out), "--haystack", str(data / "hay"), "--lengths", "300",
            "--depths", "0,100", "--template", template, "--max-new-tokens", "4", "--batch-size", "1",
            "--no-progress"]


def _attention_argv(model: Path, out: Path, data: Path, template: str) -> list[str]:
    return ["attention", "--model", str(model), "--out", str(out), "--data", str(data / "caps.json"),
            "--limit", "2", "--template", template, "--max-new-tokens", "3", "--no-progress"]


def _attention_finals(out: Path) -> dict[Any, Any]:
    s = json.loads((out / "summary.json").read_text())
    return {(t, "answers"): v["answers"][0] for t, v in s["templates"].items()}


def _attention_mark(row: dict[str, Any]) -> None:
    if "answers" in row:
        row["answers"][0] = MARK


COMMANDS = {
    "eval": Command("eval", "examples", _eval_argv,
                    lambda out: {(r["suite"], r["id"]): r["output"] for r in _jsonl(out / "examples.jsonl")},
                    lambda r: (r["suite"], r["id"]), lambda r: r.update(output=MARK), "suite"),
    "nih": Command("nih", "cells", _nih_argv,
                   lambda out: {r["key"]: r["output"] for r in _jsonl(out / "cells.jsonl")},
                   lambda r: r["key"], lambda r: r.update(output=MARK), "key"),
    "attention": Command("attention", "attention", _attention_argv, _attention_finals,
                         lambda r: (r["template"], "answers") if "answers" in r else None, _attention_mark,
                         "template"),
}
TEMPLATE = {"eval": "raw", "nih": "raw", "attention": "raw"}


@pytest.fixture
def data(tmp_path) -> Path:
    d = tmp_path / "data"
    (d / "hay").mkdir(parents=True)
    (d / "caps.json").write_text(json.dumps(GOOD), encoding="utf-8")
    sents = [f"Sentence number {i} talks about startups and {w}." for i, w in
             enumerate(["ideas", "money", "cities", "code", "essays", "users", "growth", "design"] * 30)]
    (d / "hay" / "a.txt").write_text(" ".join(sents), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def nochat_dir(tmp_path_factory) -> Path:
    """A saved tiny Llama whose tokenizer has no chat template."""
    from ctxrely.models.tiny import save_tiny, tiny_model

    _, tok = tiny_model("llama")
    tok.chat_template = None
    d = save_tiny(tmp_path_factory.mktemp("nochat"), "llama", tokenizer=tok)
    (d / "chat_template.jinja").unlink(missing_ok=True)
    return d


def killed_run(cmd: Command, argv: list[str], monkeypatch) -> tuple[Path, list[dict[str, Any]]]:
    """Run to the end but keep the partial file (a kill after the last batch); mark its rows."""
    with monkeypatch.context() as m:
        m.setattr(ResumeLog, "clear", lambda self: self.close())
        assert main(argv) == 0
    out = Path(argv[argv.index("--out") + 1])
    part = out / f"{cmd.stem}.partial.jsonl"
    lines = part.read_text(encoding="utf-8").splitlines()
    rows = [json.loads(x) for x in lines[1:]]
    for r in rows:
        cmd.mark(r)
    part.write_text("\n".join([lines[0], *(json.dumps(r) for r in rows)]) + "\n", encoding="utf-8")
    assert not (out / LOCK).exists()
    return part, rows


def _marked(cmd: Command, out: Path) -> set[Any]:
    return {k for k, v in cmd.finals(out).items() if v == MARK}


def _keys(cmd: Command, rows: list[dict[str, Any]]) -> set[Any]:
    return {k for k in map(cmd.key, rows) if k is not None}


@pytest.fixture(params=sorted(COMMANDS))
def cmd(request) -> Command:
    return COMMANDS[request.param]


def test_torn_last_line_then_append_then_resume_loses_and_fuses_nothing(cmd, tiny_model_dir, data, tmp_path,
                                                                        monkeypatch):
    argv = cmd.argv(tiny_model_dir("llama"), tmp_path / "out", data, TEMPLATE[cmd.name])
    part, rows = killed_run(cmd, argv, monkeypatch)
    text = part.read_text(encoding="utf-8")
    last = json.dumps(rows[-1])
    part.write_text(text[: len(text) - len(last) // 2 - 1], encoding="utf-8")  # the kill tore the last row
    head = json.loads(text.split("\n", 1)[0])["config_hash"]
    with ResumeLog(part.parent, head, stem=cmd.stem) as log:  # the resumed run's next batch
        log.append([rows[-1]])
    assert [json.loads(x) for x in part.read_text(encoding="utf-8").splitlines()[1:]] == rows
    assert main(argv) == 0
    assert _marked(cmd, part.parent) == _keys(cmd, rows)  # every row resumed, none fused or lost
    assert not part.exists()


@pytest.mark.parametrize("header", ["GARBAGE", '{"config_ha'])
def test_garbage_or_torn_header_is_reported_and_its_rows_kept(cmd, header, tiny_model_dir, data, tmp_path,
                                                             monkeypatch, caplog):
    argv = cmd.argv(tiny_model_dir("llama"), tmp_path / "out", data, TEMPLATE[cmd.name])
    part, rows = killed_run(cmd, argv, monkeypatch)
    lines = part.read_text(encoding="utf-8").splitlines()
    part.write_text("\n".join([header, *lines[1:]]) + "\n", encoding="utf-8")
    assert main(argv) == 0
    assert part.name in caplog.text and "not a resume header" in caplog.text
    assert _marked(cmd, part.parent) == set()  # settings unknown: computed again ...
    kept = part.parent / f"{cmd.stem}.partial.unreadable.jsonl"
    assert kept.read_text(encoding="utf-8").splitlines()[1:] == lines[1:]  # ... and the old rows kept


def test_partial_of_other_settings_is_kept_renamed(cmd, tiny_model_dir, data, tmp_path, monkeypatch, caplog):
    argv = cmd.argv(tiny_model_dir("llama"), tmp_path / "out", data, TEMPLATE[cmd.name])
    part, rows = killed_run(cmd, argv, monkeypatch)
    lines = part.read_text(encoding="utf-8").splitlines()
    part.write_text("\n".join([json.dumps({"config_hash": "0123456789ab"}), *lines[1:]]) + "\n", encoding="utf-8")
    assert main(argv) == 0
    assert _marked(cmd, part.parent) == set()
    kept = part.parent / f"{cmd.stem}.partial.0123456789ab.jsonl"
    assert kept.read_text(encoding="utf-8").splitlines()[1:] == lines[1:] and kept.name in caplog.text


def test_a_rerun_that_fails_a_check_leaves_the_partial_intact(cmd, nochat_dir, data, tmp_path, monkeypatch,
                                                              capsys):
    part, _ = killed_run(cmd, cmd.argv(nochat_dir, tmp_path / "out", data, "raw"), monkeypatch)
    before = part.read_bytes()
    capsys.readouterr()
    assert main(cmd.argv(nochat_dir, tmp_path / "out", data, "chat")) == 2  # no chat template
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "chat template" in err
    assert part.read_bytes() == before and sorted(p.name for p in part.parent.glob("*.partial*")) == [part.name]


def test_changed_weights_at_the_same_path_do_not_resume(cmd, tiny_tokenizer, data, tmp_path, monkeypatch):
    from ctxrely.models.tiny import save_tiny

    model = save_tiny(tmp_path / "model", "llama", seed=0, tokenizer=tiny_tokenizer)
    argv = cmd.argv(model, tmp_path / "out", data, TEMPLATE[cmd.name])
    part, rows = killed_run(cmd, argv, monkeypatch)
    save_tiny(tmp_path / "model", "llama", seed=1, tokenizer=tiny_tokenizer)  # other weights, same path
    assert main(argv) == 0
    assert _marked(cmd, part.parent) == set()
    kept = [p.name for p in part.parent.glob(f"{cmd.stem}.partial.*.jsonl")]
    assert len(kept) == 1 and len(_jsonl(part.parent / kept[0])) == len(rows) + 1  # old rows kept aside


def test_a_second_run_on_the_same_out_is_refused(cmd, tiny_model_dir, data, tmp_path, monkeypatch, capsys):
    argv = cmd.argv(tiny_model_dir("llama"), tmp_path / "out", data, TEMPLATE[cmd.name])
    part, rows = killed_run(cmd, argv, monkeypatch)
    before = part.read_bytes()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (part.parent / LOCK).write_text(str(other.pid))
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert f"in use by another ctxrely run (pid {other.pid})" in err and "\n" not in err
        assert part.read_bytes() == before
    finally:
        other.kill()
        other.wait()
    assert main(argv) == 0  # the lock of a process that is gone is taken over
    assert _marked(cmd, part.parent) == _keys(cmd, rows) and not (part.parent / LOCK).exists()


def test_hand_damaged_rows_give_one_line_and_are_done_again(cmd, tiny_model_dir, data, tmp_path, monkeypatch,
                                                           caplog):
    argv = cmd.argv(tiny_model_dir("llama"), tmp_path / "out", data, TEMPLATE[cmd.name])
    part, rows = killed_run(cmd, argv, monkeypatch)
    lines = part.read_text(encoding="utf-8").splitlines()
    bad = dict(rows[0])
    bad.pop(cmd.drop)
    part.write_text("\n".join([lines[0], json.dumps(bad), "[1, 2]", "GARBAGE", *lines[2:]]) + "\n",
                    encoding="utf-8")
    assert main(argv) == 0
    assert f"{part.name} line 2: damaged row" in caplog.text and f"{part.name} line 4: not JSON" in caplog.text
    assert _marked(cmd, part.parent) == _keys(cmd, rows[1:])


def test_duplicate_suite_names_are_refused(tiny_model_dir, data, tmp_path, capsys):
    base = ["eval", "--model", str(tiny_model_dir("llama")), "--out", str(tmp_path / "o"), "--limit", "2",
            "--no-progress"]
    assert main([*base, "--suites", "cf_capitals,cf_capitals"]) == 2
    assert "suite 'cf_capitals' is given twice" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / "caps.json"
    twin.write_text(json.dumps(GOOD[:2]), encoding="utf-8")
    assert main([*base, "--data", str(data / "caps.json"), "--data", str(twin)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(data / "caps.json") in err and str(twin) in err and "\n" not in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_meta_damage_in_iter_rows_never_raises(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_bytes(b'{"a": 1}\n\xff\xfe garbage\n[1]\n{"b": 2')
    assert [r for _, r in iter_rows(p)] == [{"a": 1}]


# -- score-data: atomic shards under meta.json (the settings, weights included) ------------------------

def _score_data(model: Path, data: Path, out: Path) -> int:
    return main(["score-data", "--model", str(model), "--data", str(data), "--out", str(out), "--shard-size", "3",
                 "--no-attention", "--no-progress"])


def _shards(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((out / "shards").iterdir())}


@pytest.fixture
def scored(tiny_tokenizer, tmp_path) -> tuple[Path, Path, Path]:
    """``(model folder, data file, out)`` after one finished ``score-data`` run."""
    from ctxrely.models.tiny import save_tiny
    from test_diagnose_rows import write_case

    model = save_tiny(tmp_path / "model", "llama", seed=0, tokenizer=tiny_tokenizer)
    data, out = write_case(tmp_path, "a.jsonl", "alpaca"), tmp_path / "s"
    assert _score_data(model, data, out) == 0
    return model, data, out


@pytest.mark.parametrize("meta", ["GARBAGE", '{"config": {"mod', "[1, 2]"])
def test_score_data_damaged_meta_gives_one_line_and_keeps_shards(scored, meta, capsys):
    model, data, out = scored
    before = _shards(out)
    (out / "meta.json").write_text(meta, encoding="utf-8")
    capsys.readouterr()
    assert _score_data(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "meta.json" in err and "\n" not in err
    assert _shards(out) == before


def test_score_data_changed_weights_at_the_same_path_are_not_resumed(scored, tiny_tokenizer, capsys):
    from ctxrely.models.tiny import save_tiny

    model, data, out = scored
    before = _shards(out)
    save_tiny(model, "llama", seed=1, tokenizer=tiny_tokenizer)
    capsys.readouterr()
    assert _score_data(model, data, out) == 2
    err = capsys.readouterr().err.strip()
    assert "other settings (weights: " in err and "\n" not in err
    assert _shards(out) == before  # kept, for the weights they were made with


def test_score_data_damaged_shard_rows_are_scored_again_and_a_second_job_refused(scored, capsys):
    model, data, out = scored
    before = _shards(out)
    first = out / "shards" / "shard-00000.jsonl"
    first.write_text("[1, 2]\n" + first.read_text(encoding="utf-8").split("\n", 1)[1], encoding="utf-8")
    (out / "shards" / "shard-00001.jsonl").write_bytes(before["shard-00001.jsonl"][:-20])  # torn
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        (out / LOCK).write_text(str(other.pid))
        capsys.readouterr()
        assert _score_data(model, data, out) == 2
        assert f"in use by another ctxrely run (pid {other.pid})" in capsys.readouterr().err
    finally:
        other.kill()
        other.wait()
    assert _score_data(model, data, out) == 0
    assert _shards(out) == before and not (out / LOCK).exists()


# -- the lab's caches and its run lock -----------------------------------------------------------------

def _probe_cache(path: Path, fp: str, calls: list[int]) -> list[dict[str, Any]]:
    from ctxrely.lab.prepare import _cached_probe

    def run() -> list[dict[str, Any]]:
        calls.append(1)
        return [{"key": f"f{i}", "known": i % 2 == 0} for i in range(3)]

    return _cached_probe(path, fp, run, n=3)


@pytest.mark.parametrize("damage", ["torn header", "garbage header", "torn last line", "list row", "other settings"])
def test_lab_probe_cache_damage_is_recomputed_and_the_old_file_kept(tmp_path, damage, caplog):
    path, calls = tmp_path / "probe.jsonl", []
    want = _probe_cache(path, "fp1", calls)
    assert _probe_cache(path, "fp1", calls) == want and len(calls) == 1  # cached
    lines = path.read_text(encoding="utf-8").splitlines()
    bad = {"torn header": ['{"fingerp', *lines[1:]], "garbage header": ["GARBAGE", *lines[1:]],
           "torn last line": [*lines[:-1], lines[-1][:7]], "list row": [lines[0], "[1]", *lines[2:]],
           "other settings": [json.dumps({"fingerprint": "fp0"}), *lines[1:]]}[damage]
    path.write_text("\n".join(bad), encoding="utf-8")
    assert _probe_cache(path, "fp1", calls) == want and len(calls) == 2
    kept = tmp_path / ("probe.fp0.jsonl" if damage == "other settings" else "probe.unreadable.jsonl")
    assert kept.read_text(encoding="utf-8") == "\n".join(bad) and kept.name in caplog.text
    assert _probe_cache(path, "fp1", calls) == want and len(calls) == 2  # the new cache is whole


def test_a_second_lab_on_the_same_out_is_refused(tmp_path, capsys):
    out = tmp_path / "lab"
    args = ["lab", "--preset", "quick", "--runs", "baseline", "--seeds", "0", "--set", "max_steps=2", "--out",
            str(out), "--no-progress", "--no-report"]
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        out.mkdir()
        (out / LOCK).write_text(str(other.pid))
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert f"in use by another ctxrely run (pid {other.pid})" in err and "\n" not in err
    finally:
        other.kill()
        other.wait()
    assert not (out / "data").exists()  # refused before anything was computed


# -- the training callback's trajectory ---------------------------------------------------------------

def test_trajectory_torn_line_then_append_then_resume_fuses_nothing(tmp_path):
    from ctxrely.track.trajectory import TrajectoryStore

    st = TrajectoryStore(tmp_path)
    st.append({"step": 0, "v": 0}, [{"suite": "a", "id": "1"}])
    for p in (st.path, st.examples_path):  # a kill mid-write of step 5
        with open(p, "a", encoding="utf-8") as f:
            f.write('{"step": 5, "v')
    st.append({"step": 5, "v": 5}, [{"suite": "a", "id": "1"}])  # the restarted run writes step 5 again
    st.append({"step": 10, "v": 10})
    assert [r["step"] for r in st.prepare(resume_step=10)] == [0, 5, 10]
    assert [r["step"] for r in st.example_rows()] == [0, 5]


@pytest.mark.parametrize("bad", ["GARBAGE", "[1, 2]", '{"v": 1}'])
def test_trajectory_hand_damage_is_one_line(tmp_path, bad):
    from ctxrely.errors import DataError
    from ctxrely.track.trajectory import TrajectoryStore

    st = TrajectoryStore(tmp_path)
    st.append({"step": 0})
    st.append({"step": 5})
    lines = st.path.read_text(encoding="utf-8").splitlines()
    st.path.write_text("\n".join([lines[0], bad, lines[1]]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="trajectory.jsonl") as e:
        st.prepare(resume_step=5)
    assert "\n" not in str(e.value)
    assert st.path.read_text(encoding="utf-8").splitlines()[1] == bad  # nothing rewritten


@pytest.mark.parametrize("damage", ['[{"nll": 1.0}, {"nl', "GARBAGE", "[1, 2]", '{"a": 1}'])
def test_lab_score_caches_damaged_or_short_are_recomputed_and_kept(tmp_path, damage, caplog):
    from ctxrely.lab.variants import _cached

    path, calls, want = tmp_path / "criticality.json", [], [{"nll": 1.0}, {"nll": 2.0}, {"nll": 3.0}]

    def compute() -> list[dict[str, float]]:
        calls.append(1)
        return want

    path.write_text(damage, encoding="utf-8")  # a kill mid-write, a hand edit, a cache of other rows
    assert _cached(path, compute, n=3) == want and len(calls) == 1
    assert (tmp_path / "criticality.unreadable.json").read_text(encoding="utf-8") == damage
    assert "criticality.unreadable.json" in caplog.text
    assert _cached(path, compute, n=3) == want and len(calls) == 1  # read back, not computed


def test_lab_damaged_preset_file_is_one_line(tmp_path, capsys):
    out = tmp_path / "lab"
    out.mkdir()
    (out / "preset.json").write_text('{"name": "qui', encoding="utf-8")
    assert main(["lab", "--preset", "quick", "--out", str(out), "--no-progress", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert "preset.json" in err and "not valid JSON" in err and "\n" not in err


def test_trajectory_damaged_settings_file_is_one_line(tmp_path):
    from ctxrely.track.trajectory import SETTINGS, TrajectoryStore

    st = TrajectoryStore(tmp_path)
    st.write_settings({"metric": "all/cf_acc"})
    (tmp_path / SETTINGS).write_text('{"metric": "al', encoding="utf-8")
    with pytest.raises(ResumeError, match="tracking.json: the tracking settings is not valid JSON") as e:
        st.settings()
    assert "\n" not in str(e.value)


def test_claim_settings_grows_the_seed_list_over_partial_reruns(tmp_path):
    """A lab rerun with ``--seeds 2`` (or one run only) does not shrink what the folder says the
    experiment is: its table's "not yet measured" list is read from the file."""
    from ctxrely.engine.resume import claim_settings

    path = tmp_path / "settings.json"
    claim_settings(path, {"lr": 0.1, "runs": ["a", "b"], "seeds": [0, 1, 2]}, grow=["runs", "seeds"])
    claim_settings(path, {"lr": 0.1, "runs": ["b"], "seeds": [1]}, grow=["runs", "seeds"])
    claim_settings(path, {"lr": 0.1, "runs": ["c"], "seeds": [3]}, grow=["runs", "seeds"])
    saved = json.loads(path.read_text())
    assert (saved["runs"], saved["seeds"]) == (["a", "b", "c"], [0, 1, 2, 3])


def test_awareness_table_lists_missing_runs_of_the_whole_experiment(tmp_path):
    from ctxrely.awareness.lab_table import collect
    from ctxrely.engine.resume import claim_settings

    path = tmp_path / "settings.json"
    claim_settings(path, {"lr": 0.1, "runs": ["template", "plain"], "seeds": [0, 1]}, grow=["runs", "seeds"])
    claim_settings(path, {"lr": 0.1, "runs": ["plain"], "seeds": [1]}, grow=["runs", "seeds"])
    assert collect(tmp_path)["missing"] == ["template-s0", "plain-s0", "template-s1", "plain-s1"]


def test_claim_settings_names_the_keys_that_differ_and_keeps_the_file(tmp_path):
    from ctxrely.engine.resume import ResumeError, claim_settings
    from ctxrely.errors import ConfigError

    path = tmp_path / "settings.json"
    claim_settings(path, {"lr": 0.1, "k": 2, "seeds": [0]}, free=["seeds"])
    claim_settings(path, {"lr": 0.1, "k": 2, "seeds": [0, 1]}, free=["seeds"])  # more seeds: same experiment
    assert json.loads(path.read_text())["seeds"] == [0, 1]
    before = path.read_text()
    with pytest.raises(ConfigError, match=r"other settings \(lr, k differ\)"):
        claim_settings(path, {"lr": 0.2, "k": 4, "seeds": [0]}, free=["seeds"])
    assert path.read_text() == before
    with pytest.raises(ConfigError, match=r"\(new_field differ\)"):  # a field the old run did not have
        claim_settings(path, {"lr": 0.1, "k": 2, "new_field": 1})
    path.write_text('{"lr": 0.1, "k"')
    with pytest.raises(ResumeError, match="settings.json: the experiment's settings is not valid JSON"):
        claim_settings(path, {"lr": 0.1})
