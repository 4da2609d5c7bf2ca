"""Compose in-context demonstrations for a target: the four IC-Train strategies of Malu et al. (2026).

Definitions (every choice is listed in ``docs/icl.md``):

- ``zero``: no demonstrations.
- ``random``: ``k`` pool examples drawn uniformly without replacement.
- ``similar``: the ``k`` most similar pool examples (ties: lower pool index first).
- ``contrastive``: with probability ``p`` one slot is *similar*: a near-duplicate of the target
  (probability ``eps``) or else the target's most similar real pool example; every other slot (all
  ``k`` when no slot is similar) is drawn uniformly from the pool *minus the target's k nearest
  neighbours*, so the similar slot is the only close example. Contexts therefore differ in how
  similar their best example is (none / nearest real / near-duplicate).

The target itself, and pool rows with the same input, are never candidates. Slots are shuffled,
so the similar example sits at a random position. Each demonstration records its pool id,
its similarity to the target and its kind (``random``, ``nearest``, ``near_duplicate``).

Example:
    >>> near_duplicate("red cat", seed=0)
    'red cat that'
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

STRATEGIES = ("zero", "random", "similar", "contrastive")
FILLERS = ("the", "a", "this", "that", "just", "so", "very", "then")


@dataclass(frozen=True)
class Demo:
    """One in-context demonstration."""

    id: str
    input: str
    output: str
    similarity: float
    kind: str  # random | nearest | near_duplicate

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def near_duplicate(text: str, rate: float = 0.1, seed: int | str = 0) -> str:
    """A deterministic near-duplicate of ``text`` that keeps its meaning (and so its label).

    ``max(1, round(rate * n_words))`` filler words (``FILLERS``), each put at the start or the end
    (a RNG seeded with ``(seed, text)`` chooses); nothing of the original is removed, reordered or
    split, so every word and character n-gram of the target survives.
    """
    rng = random.Random(f"{seed}\x00{text}")
    words = text.split()
    for _ in range(max(1, round(rate * len(words)))):
        words.insert(rng.choice((0, len(words))), rng.choice(FILLERS))
    return " ".join(words)


def nearest(sims: np.ndarray, candidates: Sequence[int], n: int) -> list[int]:
    """The ``n`` candidates with the highest similarity (stable: lower index first on ties)."""
    cand = np.asarray(list(candidates), dtype=int)
    if cand.size == 0:
        return []
    order = np.argsort(-sims[cand], kind="stable")
    return [int(i) for i in cand[order[:n]]]


def compose(
    target: dict[str, str],
    pool: Sequence[dict[str, str]],
    sims: np.ndarray,
    strategy: str,
    k: int,
    rng: random.Random,
    *,
    p: float = 0.5,
    eps: float = 0.1,
    near_dup_sim: Any = None,
    seed: int = 0,
    exclude: Sequence[int] = (),
) -> list[Demo]:
    """The demonstrations for ``target`` (``{"id", "input", "output"}``) drawn from ``pool``.

    Args:
        sims: similarity of every pool row to the target (``similarity_matrix`` row).
        strategy: one of ``STRATEGIES``.
        rng: the draw's random source (the caller seeds it; see :func:`ctxrely.icl.rows.build_rows`).
        near_dup_sim: ``f(target_input, near_duplicate_input) -> float``; needed for contrastive.
        exclude: pool indices that are never candidates (the target's own row).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == "zero" or k == 0:
        return []
    banned = set(exclude)
    cands = [i for i in range(len(pool)) if i not in banned and pool[i]["input"] != target["input"]]
    if len(cands) < k:
        raise ValueError(f"k={k} but only {len(cands)} pool rows can serve as demonstrations")

    def demo(i: int, kind: str) -> Demo:
        return Demo(pool[i]["id"], pool[i]["input"], pool[i]["output"], round(float(sims[i]), 6), kind)

    if strategy == "random":
        demos = [demo(i, "random") for i in rng.sample(cands, k)]
    elif strategy == "similar":
        demos = [demo(i, "nearest") for i in nearest(sims, cands, k)]
    else:
        nn = nearest(sims, cands, k)
        far = [i for i in cands if i not in set(nn)]
        has_similar = rng.random() < p
        n_far = k - 1 if has_similar else k
        if len(far) < n_far:
            raise ValueError(f"contrastive needs {n_far} pool rows outside the target's {k} nearest "
                             f"neighbours; only {len(far)} exist")
        demos = [demo(i, "random") for i in rng.sample(far, n_far)]
        if has_similar:
            if rng.random() < eps:
                if near_dup_sim is None:
                    raise ValueError("contrastive sampling needs near_dup_sim to score near-duplicates")
                text = near_duplicate(target["input"], seed=seed)
                demos.append(Demo(f"{target['id']}~dup", text, target["output"],
                                  round(float(near_dup_sim(target["input"], text)), 6), "near_duplicate"))
            else:
                demos.append(demo(nn[0], "nearest"))
    rng.shuffle(demos)
    return demos
