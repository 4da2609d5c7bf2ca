"""Exactness of the fast engine paths, on tiny random models: ``--mode both`` (one prefill) equals
separate generate and logits runs; token-budget batching changes no answer; one progress bar with
true counts; no ``past_key_values`` deprecation warnings; bad ``--limit``/``--max-new-tokens`` refused."""

from __future__ import annotations

import logging
import warnings

import pytest

torch = pytest.importorskip("torch")

from ctxrely.data.schema import ConflictExample  # noqa: E402
from ctxrely.engine import api  # noqa: E402
from ctxrely.engine.result import GEN_KEYS, LOGIT_KEYS  # noqa: E402


def examples(n: int = 9) -> list[ConflictExample]:
    caps = [("France", "Paris", "Lyon"), ("Germany", "Berlin", "Munich"), ("Italy", "Rome", "Milan"),
            ("Japan", "Tokyo", "Osaka"), ("Peru", "Lima", "Cusco")]
    out = []
    for i in range(n):
        c, p, f = caps[i % len(caps)]
        ctx = f"In 19{i:02d} the capital of {c} moved from {p} to {f}." + " It was a long story." * (i % 4)
        out.append(ConflictExample(f"e{i}", "demo", ctx, f"What is the capital of {c}?", f,
                                   None if i == 4 else p))  # one row without a parametric answer
    return out


@pytest.fixture(scope="module")
def models(tiny_model_dir):
    from ctxrely.models.load import load_model

    return lambda arch: load_model(str(tiny_model_dir(arch)))


def assert_same_rows(a, b, keys, tol=1e-4):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for k in keys:
            u, v = getattr(x, k), getattr(y, k)
            if isinstance(u, float) and not isinstance(u, bool):
                assert u == pytest.approx(v, abs=tol), (x.id, k)
            else:
                assert u == v, (x.id, k, u, v)


# alpaca ends in "\n": the scored prompt stops before it (lm-eval's split) and decoding is fed it first
@pytest.mark.parametrize("arch,fmt", [("llama", "raw"), ("llama", "alpaca"), ("gpt2", "alpaca"), ("qwen2", "raw")])
def test_both_mode_equals_separate_generate_and_logits_runs(models, arch, fmt):
    model, tok = models(arch)
    kw = dict(fmt=fmt, max_new_tokens=6, batch_size=4, progress=False, stop=["\n"])
    both = api.score_examples(model, tok, examples(), mode="both", **kw)
    gen = api.score_examples(model, tok, examples(), mode="generate", **kw)
    logit = api.score_examples(model, tok, examples(), mode="logits", **kw)
    assert_same_rows(both, gen, GEN_KEYS)
    assert_same_rows(both, logit, LOGIT_KEYS)
    assert all(r.output is not None and r.logp_cf is not None for r in both)
    assert set(both[0].to_dict()) == set(gen[0].to_dict()) | set(logit[0].to_dict())
    assert not set(GEN_KEYS) & set(logit[0].to_dict()) and not set(LOGIT_KEYS) & set(gen[0].to_dict())


@pytest.mark.parametrize("fmt", ["raw", "alpaca"])
def test_token_budget_batching_changes_no_output(models, fmt):
    model, tok = models("llama")
    kw = dict(fmt=fmt, mode="both", max_new_tokens=5, progress=False)
    one = api.score_examples(model, tok, examples(), batch_size=1, **kw)
    for batching in ({"batch_tokens": 150}, {"batch_tokens": 400, "batch_size": 3}, {}):
        got = api.score_examples(model, tok, examples(), **batching, **kw)
        assert_same_rows(got, one, GEN_KEYS + LOGIT_KEYS)


def test_token_budget_batches_respect_the_budget():
    from ctxrely.engine.batching import plan_batches, token_budget_batches

    lengths = [30, 5, 17, 17, 2, 60, 9, 9, 9, 1]
    for budget, extra in ((64, 0), (100, 8), (1, 0)):
        batches = token_budget_batches(lengths, budget, extra=extra)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            width = max(lengths[i] for i in b) + extra
            assert len(b) == 1 or len(b) * width <= budget
        flat = [lengths[i] for b in batches for i in b]
        assert flat == sorted(flat, reverse=True)  # longest first
    assert max(len(b) for b in token_budget_batches(lengths, 10_000, max_batch=3)) == 3
    assert plan_batches(lengths, batch_size=4) == [[5, 0, 2, 3], [6, 7, 8, 1], [4, 9]]


def test_one_progress_bar_with_true_counts(models, monkeypatch, tmp_path):
    import ctxrely.engine.scoring as scoring

    bars = []

    class Bar:
        def __init__(self, total, desc):
            self.total, self.desc, self.n = total, desc, 0
            bars.append(self)

        def update(self, n=1):
            self.n += n

        def close(self):
            pass

    monkeypatch.setattr(scoring, "_progress", lambda total, desc, enabled: Bar(total, desc))
    model, tok = models("llama")
    api.evaluate(model, tok, examples=examples(), mode="both", max_new_tokens=4, batch_size=2, n_boot=0,
                 out_dir=tmp_path / "run")
    assert [(b.total, b.n) for b in bars] == [(9, 9)]


def test_no_cache_deprecation_warnings(models, caplog):
    model, tok = models("llama")
    logging.Logger.warning_once.cache_clear()  # transformers warns once per process: make it warn again
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING):
        warnings.simplefilter("always")
        api.score_examples(model, tok, examples(4), mode="both", max_new_tokens=4, batch_size=2, progress=False)
    said = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    assert not [m for m in said if "past_key_values" in m or "deprecated" in m.lower()], said


@pytest.mark.parametrize("args,fragment", [
    (["--limit", "-1"], "--limit must be a positive number"),
    (["--limit", "0"], "--limit must be a positive number"),
    (["--max-new-tokens", "0"], "--max-new-tokens must be >= 1"),
    (["--batch-size", "0"], "--batch-size must be >= 1"),
    (["--batch-tokens", "0"], "--batch-tokens must be >= 1"),
])
def test_bad_limits_are_refused_with_one_line(capsys, tmp_path, args, fragment):
    from ctxrely.cli.main import main

    code = main(["eval", "--model", str(tmp_path / "not-loaded"), "--suites", "cf_capitals", "--mode", "both",
                 *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and fragment in err[0], err
    assert not (tmp_path / "out").exists()


def test_logit_mode_needs_no_new_tokens(models):
    from ctxrely.errors import ConfigError

    model, tok = models("llama")
    res = api.evaluate(model, tok, examples=examples(3), mode="logits", max_new_tokens=0, n_boot=0, progress=False)
    assert len(res.rows) == 3
    with pytest.raises(ConfigError, match="--limit"):
        api.evaluate(model, tok, examples=examples(3), mode="logits", limit=-1, progress=False)


def test_a_decode_strategy_steers_scores_and_answers_alike(models):
    """The seam i10's CAD/steering plugs into: one strategy object sees the prefill, the answer tails and
    every decode step, so a logit change shows up in log-probs and in generated text alike."""
    from ctxrely.engine.backend import Request
    from ctxrely.engine.hf import HFBackend, PlainDecode

    model, tok = models("llama")
    boost = tok(" Lyon", add_special_tokens=False)["input_ids"][-1]
    seen = []

    class Boost:
        def __init__(self, stream):
            self.stream = stream

        def extend(self, ids, mask):
            out = self.stream.extend(ids, mask).clone()
            out[..., boost] += 1e4
            return out

        def select(self, rows):
            return Boost(self.stream.select(rows))

    class BoostDecode(PlainDecode):
        def start(self, model, ids, mask, requests):
            seen.extend(r.example for r in requests)
            last, stream = super().start(model, ids, mask, requests)
            last = last.clone()
            last[..., boost] += 1e4
            return last, Boost(stream)

    backend = HFBackend(model, tok, BoostDecode())
    out = backend.run([Request([5, 6, 7], conts=[[boost, boost], [9]], max_new_tokens=3, example="x")])[0]
    assert out.scores[0].logp == pytest.approx(0.0, abs=1e-3) and out.scores[0].greedy
    assert out.scores[1].logp < -1000
    assert out.text == tok.decode([boost] * 3).strip()
    assert seen == ["x"]
    rows = api.score_examples(model, tok, examples(3), mode="both", max_new_tokens=2, backend=backend,
                              progress=False)
    assert [r.output for r in rows] == [tok.decode([boost] * 2).strip()] * 3


def test_finished_rows_leave_the_batch_without_changing_answers(models):
    from ctxrely.engine.hf import HFBackend, PlainDecode

    model, tok = models("llama")
    selects = []

    class CountSelects(PlainDecode):
        def start(self, model, ids, mask, requests):
            last, stream = super().start(model, ids, mask, requests)
            real = stream.select
            stream.select = lambda rows: selects.append(len(rows)) or real(rows)
            return last, stream

    exs = examples()
    kw = dict(mode="generate", max_new_tokens=10, batch_size=9, stop=["Le", "St", "port"], progress=False)  # rows stop at different steps
    packed = api.score_examples(model, tok, exs, backend=HFBackend(model, tok, CountSelects()), **kw)
    full = api.score_examples(model, tok, exs, backend=HFBackend(model, tok, compact=False), **kw)
    assert selects and all(n < 9 for n in selects)  # rows did leave the batch
    assert [r.output for r in packed] == [r.output for r in full]
    assert len({len(r.output) for r in full}) > 2  # answers of several lengths


def test_device_and_dtype_auto():
    from ctxrely.models.load import resolve_device, resolve_dtype

    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").startswith(expected) and resolve_device("cuda:1") == "cuda:1"
    assert resolve_dtype("auto", "cpu") is torch.float32 and resolve_dtype("bfloat16", "cpu") is torch.bfloat16
