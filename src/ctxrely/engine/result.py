"""The result of one evaluation: a summary (metrics with CIs, config, provenance) and per-example rows.

Example:
    >>> res = EvalResult(summary={"metrics": {"all": {"n": 0}}, "flat": {"all/cf_acc": 0.5}}, rows=[])
    >>> res.metrics["all/cf_acc"]
    0.5
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
                    txt = "absent" if v["mean"] is None else f"{v['mean']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"
                    rows.append((suite, key, txt))
                elif key == "buckets" and v:
                    rows.append((suite, "buckets", " / ".join(f"{b} {c}" for b, c in v["counts"].items())))
                elif v is None and key != "buckets":
                    rows.append((suite, key, "absent (no parametric answer)"))
        return rows
