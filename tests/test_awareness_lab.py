"""The awareness lab (Wang et al. 2024): data, the plain `qa` prompt, and a resumable end-to-end run."""

import importlib.util
import json

import pytest

from ctxrely.awareness.lab import AwarenessLabSettings, run_awareness_lab
from ctxrely.awareness.lab_data import CHATML_TEMPLATE, awareness_mixture, render_rows
from ctxrely.awareness.lab_table import collect, to_markdown
from ctxrely.awareness.nih import render_prompt
from ctxrely.awareness.roles import encode_roles


def test_mixture_kinds_and_shares():
    rows = awareness_mixture(40, dependent_share=0.25, seed=3)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("dep") == 10 and kinds.count("indep") == 30
    for r in rows:
        if r["kind"] == "dep":
            assert r["answer"] in r["context"]  # the passage carries the answer
        else:
            assert r["context"] == ""
    assert awareness_mixture(40, dependent_share=0.25, seed=3) == rows  # deterministic
    with pytest.raises(ValueError, match="dependent_share"):
        awareness_mixture(4, dependent_share=1.5)


def test_rows_render_the_same_turns_two_ways():
    rows = awareness_mixture(6, seed=0)
    chat = render_rows(rows, "template")
    qa = render_rows(rows, "qa")
    for r, c, q in zip(rows, chat, qa, strict=True):
        assert c["prompt"][0]["content"] + "\nAnswer:" == q["prompt"]
        assert c["completion"][0]["content"] == r["answer"] and q["completion"] == " " + r["answer"]
    marked = render_rows(rows, "template", indicator="[IND]", marked=[i % 2 == 0 for i in range(6)])
    assert [m["question"].endswith(" [IND]") for m in marked] == [True, False] * 3
    with pytest.raises(ValueError, match="unknown row template"):
        render_rows(rows, "chatml")


def test_qa_template_roles(tiny_tokenizer):
    assert render_prompt(tiny_tokenizer, "USER", "qa") == "USER\nAnswer:"
    enc = encode_roles(tiny_tokenizer, "the user turn", "Paris", "qa")
    text_roles = set(enc.roles)
    assert {"user", "assistant", "template"} <= text_roles  # "\nAnswer:" is template, not user
    assert enc.roles[enc.queries[0]] == "template"  # the first answer token is predicted from the cue


@pytest.mark.skipif(importlib.util.find_spec("needlehaystack") is None, reason="needlehaystack not installed")
def test_lab_end_to_end_and_resume(tmp_path, tiny_model_dir, monkeypatch, tiny_tokenizer):
    import transformers

    model_dir = tiny_model_dir("llama")
    s = AwarenessLabSettings(model=str(model_dir), runs=("template", "plain", "template_indicator"), seeds=(0,),
                             n_train=16, max_steps=2, batch_size=4, max_length=256, nih_lengths=(200,),
                             nih_depths=(0, 100), nih_new_tokens=4, squad_limit=2, attention_length=200,
                             attention_prompts=2, attention_new_tokens=3)
    said: list[str] = []
    summary = run_awareness_lab(s, tmp_path / "lab", say=said.append)
    from ctxrely.awareness.demo import find_squad_sample

    squad = find_squad_sample()
    assert any("SQuAD skipped" in m for m in said) == (squad is None)
    got = {(r["run"], r["format"]) for r in summary["rows"]}
    assert got == {("base", "chat"), ("base", "qa"), ("template", "chat"), ("template", "qa"), ("plain", "qa"),
                   ("template_indicator", "chat"), ("template_indicator", "chat+ind")}
    assert summary["missing"] == []
    ind = summary["indicator"]["template_indicator-s0"]
    assert ind["marked"] == 8 and ind["threshold_rule"] == "median of all rows"
    for r in summary["rows"]:
        assert 0 <= r["mean"]["nih_recall"] <= 1
        assert (r["mean"]["squad_f1"] is None) == (squad is None)
        assert abs(sum(r["mean"][f"attn_{k}"] for k in ("bos", "user", "template", "assistant")) - 1) < 1e-3
    md = to_markdown(summary)
    lab = tmp_path / "lab"
    assert len(summary["intervals"]) == len(summary["rows"])  # one seed: one interval row per (run, format)
    for name in ("awareness_intervals.md", "awareness_layers.md"):
        assert "| template SFT + indicator | 0 |" in (lab / name).read_text()
    assert md.splitlines()[0].startswith("| run | seeds |") and "| template SFT + indicator | 0 |" in md
    # the chat template the lab gives a base model is ChatML, with BOS first
    assert CHATML_TEMPLATE.startswith("{{ bos_token }}")
    # a rerun trains nothing and measures nothing again
    final = tmp_path / "lab" / "runs" / "template-s0" / "final"
    before = {p: p.stat().st_mtime_ns for p in final.iterdir()}
    calls = []
    monkeypatch.setattr(transformers.Trainer, "train", lambda *a, **k: calls.append(1))
    again = run_awareness_lab(s, tmp_path / "lab", say=said.append)
    assert calls == [] and {p: p.stat().st_mtime_ns for p in final.iterdir()} == before
    assert collect(tmp_path / "lab")["rows"] == again["rows"]
    # other settings in the same folder are refused
    with pytest.raises(ValueError, match="other settings"):
        run_awareness_lab(AwarenessLabSettings(**{**s.__dict__, "max_steps": 3}), tmp_path / "lab")
    info = json.loads((tmp_path / "lab" / "runs" / "plain-s0" / "run_info.json").read_text())
    assert info["n_rows"] == 16


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def test_interval_and_layer_views_from_written_results(tmp_path):
    from ctxrely.awareness.lab_intervals import interval_markdown, interval_rows, layer_markdown
    from ctxrely.awareness.lab_table import FORMAT_LABELS, RUN_LABELS

    cells = [{"recall": r} for r in (1.0, 0.5, 0.0, 1.0)]
    squad = {"per_item": [{"contains": c, "f1": f} for c, f in ((True, 1.0), (False, 0.2), (True, 0.6))]}
    layers = [{"user": 0.2 * i, "assistant": 0.1} for i in range(6)]
    for folder in ("base", "runs/plain-s1/eval", "runs/template-s0/eval", "runs/template-s2/eval"):
        _write(tmp_path / folder / "nih-qa.json", {"cells": cells})
        _write(tmp_path / folder / "squad-qa.json", squad)
        _write(tmp_path / folder / "attention-qa.json", {"per_layer": layers})
    for run in ("plain-s1", "template-s0"):  # template-s2 has no lab_done.json: unfinished, left out
        _write(tmp_path / "runs" / run / "lab_done.json", {})
    rows = interval_rows(tmp_path)
    assert [(r["run"], r["seed"]) for r in rows] == [("base", "-"), ("template", "0"), ("plain", "1")]
    r = rows[0]
    assert r["nih_recall"]["mean"] == 0.625 and r["nih_recall"]["ci_low"] <= 0.625 <= r["nih_recall"]["ci_high"]
    assert r["squad_contains"]["mean"] == 2 / 3 and 0 < r["squad_contains"]["ci_low"] < 2 / 3
    assert r["squad_f1"]["mean"] == 0.6
    md = interval_markdown(tmp_path, RUN_LABELS, FORMAT_LABELS)
    assert "4 cells" in md and "3 q." in md and "| plain SFT | 1 | plain Q/A | 0.62 [" in md
    lay = layer_markdown(tmp_path, RUN_LABELS, FORMAT_LABELS)
    assert "user, layers 1-2" in lay.splitlines()[0] and "assistant, layers 5-6" in lay.splitlines()[0]
    assert "| base (before) | - | plain Q/A | 0.10 | 0.50 | 0.90 | 0.10 | 0.10 | 0.10 |" in lay
