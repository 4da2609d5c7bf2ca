"""Training data of the awareness lab: context-dependent and context-independent instruction rows.

Wang et al. (2024) trace the loss of context awareness under chat templates to the
*context-independent* rows of instruction data. This module builds a mixture of both kinds from
generators only (no download), each row rendered two ways from the same turns:

* **context-dependent** (``dep``): a fact about an invented entity stated in a passage of several
  sentences (the answer can only come from the passage), or a real fact whose passage states a
  counterfactual object (the answer follows the passage);
* **context-independent** (``indep``): a real fact asked closed-book, or a small arithmetic
  instruction.

``template`` rows are conversational (``[{"role": "user", ...}]``: the trainer applies the
tokenizer's chat template, loss on the assistant turn); ``qa`` rows are plain text, the user turn
followed by ``\\nAnswer:`` (the ``qa`` template of ``ctxrely nih`` / ``ctxrely attention`` and the
``rc-qa`` format of ``ctxrely eval``).

Example:
    >>> rows = awareness_mixture(n_rows=8, seed=0)
    >>> sorted({r["kind"] for r in rows})
    ['dep', 'indep']
    >>> render_rows(rows[:1], "qa")[0]["prompt"].endswith("\\nAnswer:")
    True
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ctxrely.awareness.nih import QA_CUE

KINDS = ("dep", "indep")
DATA_VERSION = "1"
#: A ChatML-style template for a base model without one (BOS first: Gemma needs it).
CHATML_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def user_turn(context: str, question: str) -> str:
    """The user turn of a training row: the passage (if any), a blank line, then the question."""
    return f"{context}\n\nQuestion: {question}" if context else f"Question: {question}"


def _passage(sentence: str, pool: Sequence[Any], n_sentences: int, rng: random.Random) -> str:
    from ctxrely.data.facts import closed_book_statement

    sents = [sentence] + [closed_book_statement(f) for f in rng.sample(list(pool), min(len(pool), n_sentences - 1))]
    rng.shuffle(sents)
    return " ".join(sents)


def _arithmetic(rng: random.Random) -> tuple[str, str]:
    a, b = rng.randrange(2, 60), rng.randrange(2, 40)
    op = rng.choice(["plus", "minus", "times"])
    val = {"plus": a + b, "minus": a - b, "times": a * b}[op]
    return f"What is {a} {op} {b}?", str(val)


def awareness_mixture(n_rows: int = 400, *, dependent_share: float = 0.5, n_sentences: int = 5,
                      seed: int = 0) -> list[dict[str, Any]]:
    """``n_rows`` shuffled rows, ``dependent_share`` of them context-dependent.

    Each row: ``kind`` (dep / indep), ``source`` (fictional, counterfactual, closed_book,
    arithmetic), ``context`` (empty for indep), ``question``, ``answer``.
    """
    from ctxrely.data.facts import Fact, closed_book_statement, load_facts, question_for
    from ctxrely.lab.mixture import fictional_facts

    if not 0 <= dependent_share <= 1:
        raise ValueError(f"dependent_share must be in [0, 1], got {dependent_share}")
    rng = random.Random(seed)
    real = load_facts()
    n_dep = round(n_rows * dependent_share)
    fictional = fictional_facts(sorted({f.relation for f in real}), n_dep, seed=seed, strict=False)
    rows: list[dict[str, Any]] = []
    for i in range(n_dep):
        if i % 3 == 2:  # a counterfactual passage: another object of the same relation
            f = rng.choice(real)
            others = [g.obj for g in real if g.relation == f.relation and g.obj != f.obj]
            if not others:
                continue
            cf = Fact(subject=f.subject, relation=f.relation, obj=rng.choice(others), subject_type=f.subject_type,
                      obj_type=f.obj_type)
            rows.append({"kind": "dep", "source": "counterfactual", "question": question_for(f), "answer": cf.obj,
                         "context": _passage(closed_book_statement(cf), real, n_sentences, rng)})
        else:
            f = fictional[i % len(fictional)]
            rows.append({"kind": "dep", "source": "fictional", "question": question_for(f), "answer": f.obj,
                         "context": _passage(closed_book_statement(f), real, n_sentences, rng)})
    for i in range(n_rows - len(rows)):
        if i % 4 == 3:
            q, a = _arithmetic(rng)
            rows.append({"kind": "indep", "source": "arithmetic", "question": q, "answer": a, "context": ""})
        else:
            f = rng.choice(real)
            rows.append({"kind": "indep", "source": "closed_book", "question": question_for(f), "answer": f.obj,
                         "context": ""})
    rng.shuffle(rows)
    return rows


def render_rows(rows: Sequence[dict[str, Any]], template: str, *, indicator: str | None = None,
                marked: Sequence[bool] | None = None) -> list[dict[str, Any]]:
    """Prompt/completion rows for the trainer in ``template`` (``template`` or ``qa``).

    ``indicator`` is appended to the question of the rows where ``marked`` is true (where the
    evaluation's ``--indicator`` puts it).
    """
    if template not in ("template", "qa"):
        raise ValueError(f"unknown row template {template!r}; choose template or qa")
    out = []
    for i, r in enumerate(rows):
        q = r["question"]
        if indicator and marked is not None and marked[i]:
            q = f"{q} {indicator}"
        user = user_turn(r["context"], q)
        if template == "template":
            row = {"prompt": [{"role": "user", "content": user}],
                   "completion": [{"role": "assistant", "content": r["answer"]}]}
        else:
            row = {"prompt": f"{user}{QA_CUE}", "completion": f" {r['answer']}"}
        out.append({**row, "kind": r["kind"], "context": r["context"], "question": q, "answer": r["answer"]})
    return out
