"""ICL-score, IWL-score and Copy-score, and the similarity-bucketed task suite, as probe suites.

Each probe is a list of :class:`~ctxrely.data.schema.ConflictExample` (context = demonstrations,
question = target input), so the evaluation core scores it and ``ContextRelianceCallback`` tracks
it during training (``eval_examples=`` / ``examples=``, ``mode="generate"``). A hit is the engine's
generation containment (SQuAD-normalised whole-word match of the answer in the greedy output).
Contexts are built once, deterministically, from a seed. Definitions (``docs/icl.md``):

- **ICL-score** (suite ``icl_probe``, ``cf_acc``): targets the training set never taught (novel
  items); the context holds a near-duplicate of the target carrying its label plus k-1 dissimilar
  pool examples. The weights cannot supply the label, only the context can.
- **IWL-score** (suite ``iwl_probe``, ``param_acc``): targets the training set taught; the context
  holds k dissimilar pool examples (irrelevant to the target). Correct = the taught label.
- **Copy-score** (suite ``iwl_probe``, ``cf_acc``): on the same prompts, the share of outputs that
  contain the label of one of those dissimilar examples (blind copying).

*Dissimilar* pool examples are drawn uniformly from the half of the pool least similar to the
target (never the target itself). Bucketed accuracy (suites ``icl_zero``, ``icl_low``,
``icl_medium``, ``icl_high``, ``cf_acc``): each held-out target gets a zero-context prompt and
three contexts (k dissimilar; its nearest real pool example + k-1 dissimilar; a near-duplicate +
k-1 dissimilar), each filed under the bucket of its realised max similarity.

Example:
    >>> from ctxrely.icl.lexicon import lexicon_task
    >>> t = lexicon_task()
    >>> ex = probe_examples(t.train, t.novel[:4], t.train[:4], k=2, similarity="bm25")
    >>> sorted(ex), ex["icl_probe"][0].cf_answer == t.novel[0]["output"]
    (['icl_probe', 'iwl_probe'], True)
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ctxrely.data.schema import ConflictExample
from ctxrely.icl.buckets import BUCKETS, bucket_of
from ctxrely.icl.rows import render_demos
from ctxrely.icl.sampling import Demo, near_duplicate, nearest
from ctxrely.icl.similarity import similarity_matrix

# Declared once, where defined (name, the probe key it reads, mode, direction, aggregation):
# ready for the metric table (metrics/).
ICL_METRICS: tuple[dict[str, Any], ...] = (
    {"name": "icl_score", "key": "icl_probe/cf_acc", "mode": "generate", "higher_is_better": True,
     "aggregation": "mean", "description": "accuracy when only a near-duplicate in context can supply the label"},
    {"name": "iwl_score", "key": "iwl_probe/param_acc", "mode": "generate", "higher_is_better": True,
     "aggregation": "mean", "description": "accuracy on taught items with only dissimilar examples in context"},
    {"name": "copy_score", "key": "iwl_probe/cf_acc", "mode": "generate", "higher_is_better": False,
     "aggregation": "mean", "description": "share of outputs holding the label of a dissimilar in-context example"},
    *({"name": f"icl_acc_{b}", "key": f"icl_{b}/cf_acc", "mode": "generate", "higher_is_better": True,
       "aggregation": "mean", "description": f"task accuracy, {b} max-similarity bucket"} for b in BUCKETS),
)


def probe_scores(metrics: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    """The named ICL metrics (``icl_score``, ``iwl_score``, ``copy_score``, ``icl_acc_<bucket>``) from
    a probe's flat metrics or a trajectory row; ``prefix`` is prepended to the suite names
    (``"velan_"`` for the built-in Velan suites)."""
    return {m["name"]: metrics.get(prefix + m["key"]) for m in ICL_METRICS}


def score_outputs(examples: dict[str, Sequence[ConflictExample]], outputs: dict[tuple[str, str], str]
                  ) -> dict[str, float | None]:
    """The named scores of given outputs (``{(suite, id): text}``), aggregated exactly as the callback does.

    Example:
        >>> ex = {"icl_probe": [ConflictExample("a", "icl_probe", "Question: x y\\nAnswer: ko", "x", "ko")]}
        >>> score_outputs(ex, {("icl_probe", "a"): "ko"})["icl_score"]
        1.0
    """
    from ctxrely.metrics.conflict import aggregate, flat_metrics, gen_flags

    flat: dict[str, Any] = {}
    for suite, exs in examples.items():
        rows = [{"suite": suite, "id": e.id, **gen_flags(outputs[(suite, e.id)], e.cf_targets(), e.param_targets())}
                for e in exs]
        flat.update(flat_metrics(aggregate(rows, n_boot=0), suite))
    return probe_scores(flat)


def _demo(r: dict[str, str], sim: float, kind: str) -> Demo:
    return Demo(r["id"], r["input"], r["output"], round(float(sim), 6), kind)


def _dissimilar(sims: np.ndarray, pool: Sequence[dict[str, str]], target: dict[str, str], n: int,
                rng: random.Random) -> list[Demo]:
    cands = [i for i in range(len(pool)) if pool[i]["id"] != target["id"] and pool[i]["input"] != target["input"]]
    order = sorted(cands, key=lambda i: (sims[i], i))
    half = order[:max(n, len(order) // 2)]
    return [_demo(pool[i], sims[i], "random") for i in rng.sample(half, n)]


def _example(suite: str, eid: str, target: dict[str, str], demos: list[Demo], rng: random.Random,
             param: str | None = None) -> ConflictExample:
    rng.shuffle(demos)
    labels = [d.output for d in demos if d.output != target["output"]]
    cf, aliases = (target["output"], ()) if param is None else (labels[0], tuple(labels[1:]))
    return ConflictExample(id=eid, suite=suite, context=render_demos(demos), question=target["input"],
                           cf_answer=cf, param_answer=param, cf_aliases=aliases,
                           meta={"demo_ids": [d.id for d in demos], "demo_kinds": [d.kind for d in demos],
                                 "max_similarity": max((d.similarity for d in demos), default=None)})


def probe_examples(pool: Sequence[dict[str, str]], novel: Sequence[dict[str, str]],
                   taught: Sequence[dict[str, str]], *, k: int = 4, similarity: str = "chrf",
                   seed: int = 0) -> dict[str, list[ConflictExample]]:
    """``{"icl_probe": [...], "iwl_probe": [...]}``: ICL items from ``novel`` targets, IWL/copy items from
    ``taught`` targets (rows of the training pool); demonstrations come from ``pool``."""
    def sim_fn(a: str, b: str) -> float:
        return float(similarity_matrix([a], [b], similarity)[0, 0])

    inputs = [r["input"] for r in pool]
    out: dict[str, list[ConflictExample]] = {"icl_probe": [], "iwl_probe": []}
    s_novel = similarity_matrix([t["input"] for t in novel], inputs, similarity)
    for i, t in enumerate(novel):
        rng = random.Random(f"icl:{seed}:{i}")
        dup = near_duplicate(t["input"], seed=seed)
        demos = [Demo(f"{t['id']}~dup", dup, t["output"], round(sim_fn(t["input"], dup), 6), "near_duplicate")]
        demos += _dissimilar(s_novel[i], pool, t, k - 1, rng)
        out["icl_probe"].append(_example("icl_probe", t["id"], t, demos, rng))
    s_taught = similarity_matrix([t["input"] for t in taught], inputs, similarity)
    for i, t in enumerate(taught):
        rng = random.Random(f"iwl:{seed}:{i}")
        out["iwl_probe"].append(_example("iwl_probe", t["id"], t, _dissimilar(s_taught[i], pool, t, k, rng), rng,
                                         param=t["output"]))
    return out


def bucket_examples(pool: Sequence[dict[str, str]], test: Sequence[dict[str, str]], *, k: int = 4,
                    similarity: str = "chrf", seed: int = 0) -> dict[str, list[ConflictExample]]:
    """Held-out targets under zero-context and three graded contexts, filed by max-similarity bucket
    (suites ``icl_<bucket>``; empty buckets are left out)."""
    sims = similarity_matrix([t["input"] for t in test], [r["input"] for r in pool], similarity)
    out: dict[str, list[ConflictExample]] = {f"icl_{b}": [] for b in BUCKETS}
    for i, t in enumerate(test):
        rng = random.Random(f"bucket:{seed}:{i}")
        out["icl_zero"].append(_example("icl_zero", f"{t['id']}/zero", t, [], rng))
        dup = near_duplicate(t["input"], seed=seed)
        cands = [j for j in range(len(pool)) if pool[j]["input"] != t["input"]]
        nn = nearest(sims[i], cands, 1)[0]
        firsts = {"far": [], "nearest": [_demo(pool[nn], sims[i][nn], "nearest")],
                  "dup": [Demo(f"{t['id']}~dup", dup, t["output"],
                               round(float(similarity_matrix([t["input"]], [dup], similarity)[0, 0]), 6),
                               "near_duplicate")]}
        for name, first in firsts.items():
            demos = first + _dissimilar(sims[i], pool, t, k - len(first), rng)
            suite = f"icl_{bucket_of(max(d.similarity for d in demos))}"
            out[suite].append(_example(suite, f"{t['id']}/{name}", t, demos, rng))
    return {name: exs for name, exs in out.items() if exs}


def write_probe_suites(out_dir: str | Path, suites: dict[str, Sequence[ConflictExample]]) -> list[Path]:
    """Write each non-empty suite as ``<out_dir>/<suite>.jsonl`` (ctxrely's conflict-data format, which
    ``ctxrely eval --data`` and ``ctxrely train eval_data=[...]`` read back); returns the files.

    Example:
        >>> write_probe_suites("probes", probe_examples(pool, novel, taught))  # doctest: +SKIP
        [PosixPath('probes/icl_probe.jsonl'), PosixPath('probes/iwl_probe.jsonl')]
    """
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, exs in suites.items():
        if not exs:
            continue
        path = out / f"{name}.jsonl"
        path.write_text("".join(json.dumps(e.to_dict(), ensure_ascii=False) + "\n" for e in exs), encoding="utf-8")
        paths.append(path)
    return paths
