"""IC-Train composition: each strategy, near-duplicates, similarity range, buckets, rows, bad input."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from ctxrely.icl.buckets import bucket_of
from ctxrely.icl.rows import build_rows
from ctxrely.icl.sampling import compose, near_duplicate, nearest
from ctxrely.icl.similarity import SIMILARITIES, similarity_matrix
from ctxrely.train.data import to_sft_rows

POOL = [{"id": f"p{i}", "input": f"item {i} of group {i % 5}", "output": f"out{i}"} for i in range(40)]


def _sims(i: int) -> np.ndarray:
    """A hand-made similarity row: pool row j scores 1 - |i - j| / 40 (row i itself included)."""
    return np.array([1 - abs(i - j) / 40 for j in range(len(POOL))])


def _dup_sim(a: str, b: str) -> float:
    return 0.95


def test_zero_random_similar():
    t, s = POOL[10], _sims(10)
    assert compose(t, POOL, s, "zero", 4, random.Random(0), exclude=[10]) == []
    r = compose(t, POOL, s, "random", 4, random.Random(0), exclude=[10])
    assert len({d.id for d in r}) == 4 and "p10" not in {d.id for d in r} and {d.kind for d in r} == {"random"}
    sim = compose(t, POOL, s, "similar", 4, random.Random(0), exclude=[10])
    assert sorted(d.id for d in sim) == ["p11", "p12", "p8", "p9"]  # the four nearest, itself excluded
    assert all(d.similarity == pytest.approx(s[int(d.id[1:])]) for d in sim)


@pytest.mark.parametrize("p, eps", [(0.5, 0.1), (0.2, 0.5), (1.0, 0.0), (0.0, 1.0)])
def test_contrastive_holds_the_similar_example_with_frequency_p(p, eps):
    t, s, k, n = POOL[20], _sims(20), 4, 3000
    nn = set(nearest(s, [j for j in range(len(POOL)) if j != 20], k))
    n_similar = n_dup = 0
    for draw in range(n):
        demos = compose(t, POOL, s, "contrastive", k, random.Random(draw), p=p, eps=eps, near_dup_sim=_dup_sim,
                        exclude=[20])
        assert len(demos) == k
        close = [d for d in demos if d.kind != "random"]
        assert len(close) <= 1
        for d in demos:  # every other slot lies outside the target's k nearest neighbours
            if d.kind == "random":
                assert int(d.id[1:]) not in nn and d.id != "p20"
        if close:
            n_similar += 1
            if close[0].kind == "near_duplicate":
                n_dup += 1
                assert close[0].output == t["output"] and close[0].input != t["input"]
            else:
                assert close[0].id == "p19" or close[0].id == "p21"  # the most similar real row
    sd = (p * (1 - p) / n) ** 0.5
    assert abs(n_similar / n - p) <= 5 * sd + 1e-9
    if n_similar:
        sd_dup = (eps * (1 - eps) / n_similar) ** 0.5
        assert abs(n_dup / n_similar - eps) <= 5 * sd_dup + 1e-9


def test_near_duplicate_is_deterministic_and_keeps_every_word():
    text = "the quick brown fox jumps over the lazy dog"
    a, b = near_duplicate(text, seed=3), near_duplicate(text, seed=3)
    assert a == b and a != text and text in a
    assert near_duplicate(text, rate=0.5, seed=1).count(" ") >= text.count(" ") + 4


@pytest.mark.parametrize("kind", SIMILARITIES)
def test_similarity_lies_in_unit_interval(kind):
    texts = [r["input"] for r in POOL[:8]] + ["", "completely different words"]
    m = similarity_matrix(texts[:8], texts, kind)
    assert m.shape == (8, 10) and (m >= 0).all() and (m <= 1).all()
    assert np.allclose(np.diag(m[:, :8]), 1.0)
    assert m[0, 1] > m[0, 9]  # shares words with row 1, none with the last text


def test_buckets():
    assert [bucket_of(x) for x in (None, 0.0, 0.3333, 1 / 3, 0.6666, 2 / 3, 1.0)] == [
        "zero", "low", "low", "medium", "medium", "high", "high"]
    with pytest.raises(ValueError):
        bucket_of(1.5)


@pytest.mark.parametrize("fmt", ["alpaca", "chat", "prompt-completion"])
def test_rows_are_deterministic_record_demos_and_train_reads_them(fmt):
    rows = build_rows(POOL, k=3, strategy="contrastive", p=1.0, eps=0.5, similarity="bm25", seed=7, fmt=fmt)
    assert rows == build_rows(POOL, k=3, strategy="contrastive", p=1.0, eps=0.5, similarity="bm25", seed=7, fmt=fmt)
    other = build_rows(POOL, k=3, strategy="contrastive", p=1.0, eps=0.5, similarity="bm25", seed=8, fmt=fmt)
    assert [r["icl"]["demo_ids"] for r in rows] != [r["icl"]["demo_ids"] for r in other]
    for r in rows:
        meta = r["icl"]
        assert len(meta["demo_ids"]) == 3 and meta["id"] not in meta["demo_ids"]
        assert meta["max_similarity"] == max(meta["demo_similarities"])
        assert meta["bucket"] == bucket_of(meta["max_similarity"])
    sft = to_sft_rows(json.loads(json.dumps(rows)), prompt_format="raw")
    assert len(sft) == len(POOL)


def test_zero_rows_have_no_context():
    rows = build_rows(POOL, k=4, strategy="zero", fmt="prompt-completion")
    assert rows[0]["prompt"] == "Question: item 0 of group 0\nAnswer:" and rows[0]["icl"]["bucket"] == "zero"


@pytest.mark.parametrize("args, pool, match", [
    (["--k", "9"], None, r"pool.jsonl, field '--k': k=9 is larger than the pool"),
    (["--p", "1.5"], None, r"field '--p': 1.5 is outside \[0, 1\]"),
    (["--eps", "-0.1"], None, r"field '--eps': -0.1 is outside \[0, 1\]"),
    (["--similarity", "cosine"], None, r"field '--similarity': unknown similarity 'cosine'"),
    ([], [{"input": "a", "output": "b"}, {"input": "c"}], r"pool.jsonl, line 2, field 'output'"),
    ([], [{"input": "a", "output": "b"}, {"question": "c", "output": "d"}], r"line 2, field 'input'"),
])
def test_bad_input_is_one_line_naming_file_line_field(tmp_path, capsys, args, pool, match):
    from ctxrely.cli.main import main

    path = tmp_path / "pool.jsonl"
    rows = pool or [{"input": f"x{i}", "output": f"y{i}"} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["icl-data", "--data", str(path), "--out", str(tmp_path / "o.jsonl"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    import re

    assert re.search(match, err), err


def test_cli_writes_rows(tmp_path, capsys):
    from ctxrely.cli.main import main

    path = tmp_path / "pool.jsonl"
    path.write_text("".join(json.dumps({k: v for k, v in r.items()}) + "\n" for r in POOL))
    out = tmp_path / "rows.jsonl"
    assert main(["icl-data", "--data", str(path), "--k", "2", "--strategy", "similar", "--similarity", "chrf",
                 "--format", "chat", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 40 and rows[0]["messages"][1] == {"role": "assistant", "content": "out0"}
    assert "40 rows (similar, k=2, chrf)" in capsys.readouterr().out
