"""IC-Train rows: k demonstrations + the target, in a format ``ctxrely train`` reads.

The demonstrations become the *context* and the target input the *question* of a ctxrely prompt
format, so training prompts and probe prompts render through one renderer:

- ``alpaca``: ``{"instruction": target input, "input": demonstrations, "output": target output}``
  (``ctxrely train`` renders it with its ``prompt_format``; use the same for probes).
- ``chat``: ``{"messages": [user: chat user text, assistant: output]}`` (the ``chat`` format's text).
- ``prompt-completion``: ``{"prompt": rendered with --prompt-format (default raw), "completion"}``.

Demonstrations are written ``Question: <input>\\nAnswer: <output>``, one per line (the words of the
``raw`` format, so a rambling model hits the ``\\nQuestion:`` stop string). Every row carries
``icl``: strategy, demonstration ids, kinds and similarities, the max similarity and its bucket.

Example:
    >>> pool = [{"id": str(i), "input": f"word {i}", "output": f"w{i}"} for i in range(6)]
    >>> rows = build_rows(pool, k=2, strategy="random", fmt="prompt-completion", similarity="embed")
    >>> rows[0]["icl"]["demo_ids"], rows[0]["completion"]
    (['5', '1'], ' w0')
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from ctxrely.data.schema import DataError
from ctxrely.icl.buckets import bucket_of
from ctxrely.icl.sampling import STRATEGIES, Demo, compose
from ctxrely.icl.similarity import SIMILARITIES, similarity_matrix

ROW_FORMATS = ("alpaca", "chat", "prompt-completion")  # layouts of the written training rows
_SPELLINGS = {"prompt_completion": "prompt-completion", "messages": "chat"}  # ctxrely.data.sft's names


def row_format(fmt: str) -> str:
    """This module's name of a row layout; the SFT reader's spellings (``prompt_completion``,
    ``messages``) are accepted too.

    Example:
        >>> row_format("prompt_completion"), row_format("alpaca")
        ('prompt-completion', 'alpaca')
    """
    return _SPELLINGS.get(fmt, fmt)


def render_demos(demos: Sequence[Demo | dict[str, Any]]) -> str:
    """The context text: ``Question: x\\nAnswer: y`` per demonstration, one per line."""
    items = [d.to_dict() if isinstance(d, Demo) else d for d in demos]
    return "\n".join(f"Question: {d['input']}\nAnswer: {d['output']}" for d in items)


def read_pool(path: str) -> list[dict[str, str]]:
    """``{"id", "input", "output"}`` rows of a JSON/JSONL/CSV file (id: the row's ``id`` or ``L<line>``).

    Raises:
        DataError: naming the file, line and field of a row without a non-empty ``input``/``output``.
    """
    from ctxrely.data.loaders import read_records

    out, seen = [], set()
    for line, rec in read_records(path):
        if not isinstance(rec, dict):
            raise DataError("expected an object with 'input' and 'output'", path=path, line=line)
        for key in ("input", "output"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise DataError("missing or empty (the pool needs string 'input' and 'output')", path=path,
                                line=line, field=key)
        rid = str(rec["id"]) if rec.get("id") is not None else f"L{line}"
        if rid in seen:
            raise DataError(f"duplicate id {rid!r}", path=path, line=line, field="id")
        seen.add(rid)
        out.append({"id": rid, "input": rec["input"], "output": rec["output"], "line": line})
    if not out:
        raise DataError("no rows", path=path)
    return out


def check_params(k: int, p: float, eps: float, strategy: str, similarity: str, fmt: str, n_pool: int,
                 path: str = "<pool>") -> None:
    """Fail with one :class:`DataError` naming the option at fault."""
    if strategy not in STRATEGIES:
        raise DataError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}", path=path,
                        field="--strategy")
    if similarity not in SIMILARITIES:
        raise DataError(f"unknown similarity {similarity!r}; choose from {', '.join(SIMILARITIES)}", path=path,
                        field="--similarity")
    if row_format(fmt) not in ROW_FORMATS:
        raise DataError(f"unknown row format {fmt!r}; choose from {', '.join(ROW_FORMATS)}", path=path,
                        field="--row-format")
    for name, v in (("--p", p), ("--eps", eps)):
        if not 0.0 <= v <= 1.0:
            raise DataError(f"{v} is outside [0, 1]", path=path, field=name)
    if k < 0:
        raise DataError(f"must be >= 0, got {k}", path=path, field="--k")
    if strategy != "zero" and k > n_pool - 1:
        raise DataError(f"k={k} is larger than the pool allows ({n_pool} rows: at most {n_pool - 1} "
                        "demonstrations besides the target)", path=path, field="--k")


def format_row(context: str, question: str, output: str, fmt: str, prompt_format: str = "raw",
               tokenizer: Any = None) -> dict[str, Any]:
    """One training row in ``fmt`` (see the module docstring)."""
    from ctxrely.engine.prompting import continuation
    from ctxrely.prompts import get_format

    fmt = row_format(fmt)
    if fmt == "alpaca":
        return {"instruction": question, "input": context, "output": output}
    if fmt == "chat":
        return {"messages": [{"role": "user", "content": get_format("chat").user_text(context, question)},
                             {"role": "assistant", "content": output}]}
    prompt = get_format(prompt_format).render(context, question, tokenizer)
    return {"prompt": prompt, "completion": continuation(prompt, output)}


def build_rows(
    pool: Sequence[dict[str, str]],
    *,
    k: int = 4,
    strategy: str = "contrastive",
    p: float = 0.5,
    eps: float = 0.1,
    similarity: str = "chrf",
    seed: int = 0,
    fmt: str = "alpaca",
    prompt_format: str = "raw",
    targets: Sequence[dict[str, str]] | None = None,
    path: str = "<pool>",
) -> list[dict[str, Any]]:
    """IC-Train rows for every target (default: every pool row, itself excluded from its context).

    Deterministic for a seed: target ``i`` draws from ``random.Random(f"{seed}:{i}")``.
    """
    check_params(k, p, eps, strategy, similarity, fmt, len(pool), path)
    pool = list(pool)
    tgts = list(targets) if targets is not None else pool
    sims = similarity_matrix([t["input"] for t in tgts], [r["input"] for r in pool], similarity)
    index = {r["id"]: i for i, r in enumerate(pool)} if targets is None else {}

    def dup_sim(a: str, b: str) -> float:
        return float(similarity_matrix([a], [b], similarity)[0, 0])

    rows = []
    for i, t in enumerate(tgts):
        rng = random.Random(f"{seed}:{i}")
        try:
            demos = compose(t, pool, sims[i], strategy, k, rng, p=p, eps=eps, near_dup_sim=dup_sim, seed=seed,
                            exclude=[index[t["id"]]] if t["id"] in index else [])
        except ValueError as e:
            raise DataError(str(e), path=path, line=t.get("line"), field="--k") from None  # type: ignore[arg-type]
        top = max((d.similarity for d in demos), default=None)
        row = format_row(render_demos(demos), t["input"], t["output"], fmt, prompt_format)
        row["icl"] = {"id": t["id"], "strategy": strategy, "similarity": similarity,
                      "demo_ids": [d.id for d in demos], "demo_kinds": [d.kind for d in demos],
                      "demo_similarities": [d.similarity for d in demos], "max_similarity": top,
                      "bucket": bucket_of(top)}
        rows.append(row)
    return rows
