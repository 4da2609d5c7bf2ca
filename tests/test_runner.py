"""The evaluation runner against plain Hugging Face references, on tiny random models.

Greedy generation equals ``model.generate`` per prompt; shared-prefill scores equal a full forward
pass; stop strings cut; long contexts are shortened (never the question) with a warning; pad-less
tokenizers work; an interrupted run resumes from ``examples.partial.jsonl``, flushed per batch.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch

from ctxrely.data.schema import ConflictExample
from ctxrely.engine import api
from ctxrely.engine.generate import greedy_generate, truncate_at_stop
from ctxrely.engine.logits import encode_pair, score_continuations
from ctxrely.engine.prompting import build_prompts
from ctxrely.prompts import get_format

PROMPTS = ["The capital of France is", "Question: What is the capital city of Germany?\nAnswer:",
           "Absence makes the heart", "In 2001 the capital moved to Herat. Question: What is the capital of "
           "Afghanistan?\nAnswer:", "Paris"]


def examples(n: int = 8, suite: str = "demo") -> list[ConflictExample]:
    caps = [("France", "Paris", "Lyon"), ("Germany", "Berlin", "Munich"), ("Italy", "Rome", "Milan"),
            ("Japan", "Tokyo", "Osaka")]
    return [ConflictExample(f"e{i}", suite, f"In 19{i:02d} the capital of {c} moved from {p} to {f}.",
                            f"What is the capital of {c}?", f, p) for i, (c, p, f) in
            ((i, caps[i % len(caps)]) for i in range(n))]


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    from ctxrely.models.load import load_model

    cache: dict[str, tuple] = {}

    def get(arch: str):
        if arch not in cache:
            cache[arch] = load_model(str(tiny_model_dir(arch)))
        return cache[arch]

    return get


def hf_greedy(model, tok, text: str, max_new_tokens: int) -> list[int]:
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tok.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    return new[:new.index(tok.eos_token_id)] if tok.eos_token_id in new else new


def clean(tok, ids: list[int]) -> str:
    text = tok.decode(ids, skip_special_tokens=False)
    for s in tok.all_special_tokens:
        text = text.replace(s, "")
    return text.strip()


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gpt2", "qwen2"])
def test_batched_generation_equals_hf_generate_per_prompt(models, arch):
    model, tok = models(arch)
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    ours = greedy_generate(model, tok, ids, max_new_tokens=12, stop=[], batch_size=4)
    assert sum(len(o) > 0 for o in ours) >= 3  # something was generated
    for text, out in zip(PROMPTS, ours, strict=True):
        assert out == clean(tok, hf_greedy(model, tok, text, 12)), (arch, text)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_shared_prefill_scores_equal_a_full_forward(models, arch):
    model, tok = models(arch)
    answers = [" Paris", " Berlin is big", " Kabul and then some more words"]
    pairs = [[encode_pair(tok, p, a, True) for a in answers] for p in PROMPTS]
    scores = score_continuations(model, tok, [ps[0][0] for ps in pairs], [[c for _, c in ps] for ps in pairs],
                                 batch_size=3)
    for ps, sc in zip(pairs, scores, strict=True):
        for (ctx, cont), s in zip(ps, sc, strict=True):
            full = torch.tensor([ctx + cont])
            with torch.no_grad():
                lp = torch.log_softmax(model(full).logits[0].float(), -1)
            pos = torch.arange(len(ctx) - 1, len(ctx) + len(cont) - 1)
            tok_lp = lp[pos, torch.tensor(cont)]
            assert s.logp == pytest.approx(float(tok_lp.sum()), abs=1e-4)
            assert s.first_logp == pytest.approx(float(tok_lp[0]), abs=1e-4)
            assert s.n_tokens == len(cont)
            assert s.greedy == bool((lp[pos].argmax(-1) == torch.tensor(cont)).all())


def test_encode_pair_moves_trailing_space_like_lm_eval(tiny_tokenizer):
    ctx, cont = encode_pair(tiny_tokenizer, "Answer: ", "Paris", True)
    assert ctx == tiny_tokenizer("Answer:")["input_ids"]
    assert ctx + cont == tiny_tokenizer("Answer: Paris")["input_ids"]


def test_stop_strings_cut_generation(models):
    model, tok = models("llama")
    ids = [tok(p)["input_ids"] for p in PROMPTS[:3]]
    free = greedy_generate(model, tok, ids, max_new_tokens=16, stop=[])
    checked = 0
    for i, text in enumerate(free):
        if len(text) < 6:
            continue
        checked += 1
        stop = text[3:6]  # a string the model does produce
        cut = greedy_generate(model, tok, [ids[i]], max_new_tokens=16, stop=[stop])[0]
        assert cut == text[:text.index(stop)].strip()
    assert checked >= 2
    assert truncate_at_stop("Herat\n\nQuestion: x", ["\nQuestion:", "\n\n"]) == "Herat"
    assert truncate_at_stop("no stop here", ["###", ""]) == "no stop here"


def test_long_context_is_shortened_never_the_question_with_a_warning(models, caplog):
    model, tok = models("llama")
    long = ConflictExample("long", "demo", "Kabul was the capital. " * 400, "What is the capital of Afghanistan?",
                           "Herat", "Kabul")
    short = examples(1)[0]
    with caplog.at_level(logging.WARNING):
        rows = api.score_examples(model, tok, [long, short], mode="both", max_new_tokens=8, progress=False)
    assert "shortened the context of 1/2 prompts" in caplog.text
    assert rows[0].context_truncated is True and rows[1].context_truncated is False
    assert rows[0].prompt.endswith("Question: What is the capital of Afghanistan?\nAnswer:")
    assert len(tok(rows[0].prompt)["input_ids"]) + 8 <= model.config.max_position_embeddings
    assert rows[0].logp_cf < 0 and isinstance(rows[0].output, str)
    huge_q = ConflictExample("q", "demo", "ctx", "why? " * 600, "a", "b")
    with pytest.raises(ValueError, match="cannot be shortened"):
        build_prompts([huge_q], get_format("raw"), tok, max_len=512, reserve=8)


def test_padless_tokenizer_gives_the_same_results(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    from ctxrely.models.load import load_model

    src = tiny_model_dir("llama")
    tok = AutoTokenizer.from_pretrained(src)
    tok.pad_token = None
    padless = tmp_path / "padless"
    padless.mkdir()
    for f in src.iterdir():
        if f.name in ("config.json", "generation_config.json", "model.safetensors"):
            (padless / f.name).write_bytes(f.read_bytes())
    tok.save_pretrained(padless)
    assert AutoTokenizer.from_pretrained(padless).pad_token is None
    model, tok2 = load_model(str(padless))
    assert tok2.pad_token == tok2.eos_token and tok2.padding_side == "left"
    ref_model, ref_tok = load_model(str(src))
    exs = examples(6)
    got = api.score_examples(model, tok2, exs, mode="both", max_new_tokens=6, batch_size=4, progress=False)
    ref = api.score_examples(ref_model, ref_tok, exs, mode="both", max_new_tokens=6, batch_size=4, progress=False)
    for a, b in zip(got, ref, strict=True):
        assert a.output == b.output
        assert a.logp_cf == pytest.approx(b.logp_cf, abs=1e-4)
    # the runner itself also copes with a tokenizer that has no pad id at all
    tok2.pad_token = None
    ids = [tok2(p)["input_ids"] for p in PROMPTS[:3]]
    assert greedy_generate(model, tok2, ids, max_new_tokens=4, stop=[]) == \
        greedy_generate(ref_model, ref_tok, ids, max_new_tokens=4, stop=[])


def test_interrupted_run_resumes_from_partial_file(models, tmp_path):
    from ctxrely.engine.hf import HFBackend

    model, tok = models("llama")
    exs = examples(10)
    kwargs = dict(mode="both", max_new_tokens=6, batch_size=4, n_boot=0, progress=False)
    clean_run = api.evaluate(model, tok, examples=exs, **kwargs)

    calls = {"n": 0}

    class CrashOnSecondBatch(HFBackend):
        def _run_batch(self, *a, **k):
            calls["n"] += 1
            if calls["n"] == 2:
                raise RuntimeError("simulated crash")
            return super()._run_batch(*a, **k)

    backend = CrashOnSecondBatch(model, tok)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="simulated crash"):
        api.evaluate(model, tok, examples=exs, out_dir=out, backend=backend, **kwargs)
    partial = out / "examples.partial.jsonl"
    lines = partial.read_text().splitlines()
    assert len(lines) == 1 + 4 and not (out / "summary.json").exists()
    done = json.loads(lines[1])
    done["output"] = "SENTINEL"  # proves the resumed run reuses the row instead of recomputing it
    lines[1] = json.dumps(done)
    partial.write_text("\n".join(lines) + '\n{"id": "e9", "sui')  # plus a line torn by the crash

    calls["n"] = -100  # no more crashes
    res = api.evaluate(model, tok, examples=exs, out_dir=out, backend=backend, **kwargs)
    assert calls["n"] == -100 + 2  # 6 remaining rows in batches of 4: two batches
    assert not partial.exists() and (out / "summary.json").exists()
    by_id = {r["id"]: r for r in res.rows}
    assert [r["id"] for r in res.rows] == [ex.id for ex in exs]
    assert by_id[done["id"]]["output"] == "SENTINEL"
    for r in clean_run.rows:
        if r["id"] != done["id"]:
            assert by_id[r["id"]]["output"] == r["output"]
            assert by_id[r["id"]]["logp_cf"] == pytest.approx(r["logp_cf"], abs=1e-5)
    saved = [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]
    assert len(saved) == 10


def test_changed_config_discards_a_stale_partial_file(models, tmp_path):
    model, tok = models("llama")
    out = tmp_path / "run"
    out.mkdir()
    stale = {"id": "e0", "suite": "demo", "output": "STALE"}
    (out / "examples.partial.jsonl").write_text(json.dumps({"config_hash": "not-this-one"}) + "\n"
                                                + json.dumps(stale) + "\n")
    res = api.evaluate(model, tok, examples=examples(3), mode="generate", max_new_tokens=4, n_boot=0,
                       progress=False, out_dir=out)
    assert all(r["output"] != "STALE" for r in res.rows)


def test_batched_encode_pairs_equal_encode_pair(tiny_tokenizer):
    from ctxrely.engine.logits import encode_pairs

    prompts = ["Answer:", "Answer: ", "Q\n", "x  \n ", "Question: who?\nAnswer:"]
    conts = [[" Paris", " Kabul"], ["Paris"], ["A b", "C"], ["y"], [" Herat (new)", " Kabul", " z"]]
    enc = [tiny_tokenizer(p)["input_ids"] for p in prompts]  # only valid where a prompt has no trailing space
    for prompt_ids in (None, enc):
        got = encode_pairs(tiny_tokenizer, prompts, conts, True, prompt_ids=prompt_ids)
        for p, cs, (p_ids, c_ids) in zip(prompts, conts, got, strict=True):
            for c, ids in zip(cs, c_ids, strict=True):
                assert encode_pair(tiny_tokenizer, p, c, True) == (p_ids, ids), (p, c)


def test_tail_buckets_bound_padding():
    from ctxrely.engine.logits import tail_buckets

    lengths = [1, 40, 2, 3, 30, 12, 7, 5, 1]
    buckets = tail_buckets(lengths)
    assert sorted(i for b in buckets for i in b) == list(range(len(lengths)))
    for b in buckets:
        assert max(lengths[i] for i in b) <= 2 * (min(lengths[i] for i in b) + 1)
    assert tail_buckets([]) == []


def test_long_stop_string_spanning_many_tokens_is_seen(tiny_tokenizer):
    from ctxrely.engine.generate import hit_stop as _hit_stop
    from ctxrely.engine.generate import stop_window as _stop_window

    tokens = tiny_tokenizer("The capital of France is Paris. The capital of Afghanistan is Kabul.")["input_ids"]
    stop = " of France is Paris. The capital of Afghanistan is Kabul."
    assert len(tiny_tokenizer(stop)["input_ids"]) > 8
    assert _hit_stop(tiny_tokenizer, tokens, [stop], _stop_window([stop]))
    assert not _hit_stop(tiny_tokenizer, tokens, [stop], 8)  # an 8-token window alone would miss it
    assert not _hit_stop(tiny_tokenizer, tokens[:-1], [stop], _stop_window([stop]))
