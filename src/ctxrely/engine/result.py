"""The result of one evaluation: a summary (metrics with CIs, config, provenance) and per-example rows,
and :class:`ScoredRow`, the engine's typed row (``to_dict()`` gives the ``examples.jsonl`` line).

Example:
    >>> row = ScoredRow(id="q1", suite="toy", prompt="P", cf_answer="Lyon", param_answer="Paris")
    >>> sorted(row.to_dict())  # neither mode ran yet: only the example's own fields
    ['cf_answer', 'context_truncated', 'id', 'param_answer', 'prompt', 'suite']
    >>> res = EvalResult(summary={"metrics": {"all": {"n": 0}}, "flat": {"all/cf_acc": 0.5}}, rows=[])
    >>> res.metrics["all/cf_acc"]
    0.5
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

GEN_KEYS = ("output", "cf_hit", "param_hit", "bucket")
LOGIT_KEYS = ("logp_cf", "n_tok_cf", "first_logp_cf", "cf_greedy", "logp_param", "n_tok_param",
              "first_logp_param", "m_c", "cf_wins", "logp_margin")
RC_KEYS = ("contains", "exact_match", "f1")


@dataclass
class ScoredRow:
    """One scored example. Generation fields are set when ``output`` is; logit fields when ``logp_cf`` is."""

    id: str
    suite: str
    prompt: str
    cf_answer: str
    param_answer: str | None
    context_truncated: bool = False
    output: str | None = None  # generate mode: the greedy answer, cut at the stop strings
    cf_hit: bool | None = None
    param_hit: bool | None = None
    bucket: str | None = None  # cf_only / param_only / both / neither
    logp_cf: float | None = None  # logits mode: sum of the answer's token log-probs
    n_tok_cf: int | None = None
    first_logp_cf: float | None = None
    cf_greedy: bool | None = None  # every token of the cf answer is the argmax
    logp_param: float | None = None
    n_tok_param: int | None = None
    first_logp_param: float | None = None
    m_c: float | None = None  # p_cf / (p_cf + p_param)
    cf_wins: bool | None = None
    logp_margin: float | None = None
    contains: bool | None = None  # gold answers only (reading comprehension): ctxrely.metrics.rc
    exact_match: bool | None = None
    f1: float | None = None
    steer_span_tokens: int | None = None  # attention steering: tokens steered toward (0: nothing to steer)
    output_p: float | None = None  # generate mode: mean token probability of the answer (stop-string tokens included)

    def to_dict(self) -> dict[str, Any]:
        """The row as ``examples.jsonl`` holds it: keys of a mode that did not run are left out."""
        d = asdict(self)
        drop = (GEN_KEYS if self.output is None else ()) + (LOGIT_KEYS if self.logp_cf is None else ()) \
            + (RC_KEYS if self.f1 is None else ()) + (("steer_span_tokens",) if self.steer_span_tokens is None else ()) \
            + (("output_p",) if self.output_p is None else ())
        return {k: v for k, v in d.items() if k not in drop}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoredRow:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class EvalResult:
    """``summary`` is what ``summary.json`` holds; ``rows`` what ``examples.jsonl`` holds."""

    summary: dict[str, Any]
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float | None]:
        """Flat ``{"<suite>/<metric>": mean}`` scalars (suite ``all`` pools every suite)."""
        return dict(self.summary.get("flat", {}))

    def save(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "summary.json", json.dumps(self.summary, indent=2, ensure_ascii=False) + "\n")
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.rows)
        _write_atomic(out / "examples.jsonl", lines)
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> EvalResult:
        out = Path(out_dir)
        summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        rows = [json.loads(line) for line in (out / "examples.jsonl").read_text(encoding="utf-8").splitlines()
                if line.strip()]
        return cls(summary, rows)

    def table(self) -> list[tuple[str, str, str]]:
        """``(suite, metric, "mean [lo, hi]")`` rows for printing."""
        rows: list[tuple[str, str, str]] = []
        for suite, agg in self.summary.get("metrics", {}).items():
            for key, v in agg.items():
                if isinstance(v, dict) and "mean" in v:
                    txt = "absent" if v["mean"] is None else (
                        f"{v['mean']:.3f} (no CI: --n-boot 0)" if v.get("ci_low") is None
                        else f"{v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]")
                    rows.append((suite, key, txt))
                elif key == "buckets" and v:
                    rows.append((suite, "buckets", " / ".join(f"{b} {c}" for b, c in v["counts"].items())))
                elif v is None and key != "buckets":
                    rows.append((suite, key, "absent (no parametric answer)"))
        return rows
