"""Sharded, resumable scoring of a training file: the engine behind ``ctxrely score-data``.

The examples are cut into shards of ``shard_size``; each finished shard is written atomically to
``DIR/shards/shard-00000.jsonl`` with a hash of every example it scored. A restarted job keeps every
shard whose hashes still match the data (so fixing one bad row rescores one shard) and redoes
partial or stale ones. Under ``accelerate launch`` rank ``r`` of ``w`` takes shards ``i % w == r``;
once all shards exist, :func:`join_shards` writes ``DIR/scores.jsonl`` (scores joined to the
original rows) and ``DIR/meta.json`` holds the settings every shard must share.

Example:
    >>> cfg = ScoreConfig(model="tiny", data="train.jsonl")
    >>> run_shards(model, tok, load_sft("train.jsonl").examples, "runs/scores", cfg)  # doctest: +SKIP
    >>> rows = join_shards("runs/scores", examples, cfg)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ctxrely.data.sft import SFTExample, example_hash
from ctxrely.engine.distributed import lockstep
from ctxrely.errors import ConfigError

log = logging.getLogger(__name__)

# settings that change the numbers in a shard; a mismatch with meta.json is an error
SHARD_KEYS = ("model", "weights", "template", "attention", "layer", "max_length", "shard_size")


@dataclass
class ScoreConfig:
    """Settings of one ``score-data`` job (written to ``DIR/meta.json``)."""

    model: str = field(metadata={"help": "model name or path (recorded; the caller loads it)"})
    data: str = field(metadata={"help": "training file that was scored"})
    fmt: str = field(default="auto", metadata={"help": "row format: auto, alpaca, messages, prompt_completion"})
    context_field: str | None = field(default=None, metadata={"help": "top-level field holding the context"})
    context_template: str | None = field(default=None, metadata={
        "help": "template with {context} (and {question}) matched against the user turn"})
    template: str = field(default="auto", metadata={"help": "rendering: auto, chat or plain"})
    batch_size: int = field(default=8, metadata={"help": "sequences per forward pass (NLL)"})
    attn_batch_size: int = field(default=4, metadata={"help": "sequences per forward pass (attention score)"})
    shard_size: int = field(default=256, metadata={"help": "examples per shard (unit of resumption)"})
    attention: bool = field(default=True, metadata={"help": "also compute the attention-based score"})
    layer: int | None = field(default=None, metadata={"help": "layer for the attention score (default: middle)"})
    cs_threshold: float = field(default=1.0, metadata={"help": "C+S when nll_without <= this (nats/token)"})
    cs_quantile: float | None = field(default=None, metadata={
        "help": "instead: C+S for the lowest q of nll_without among rows with context"})
    max_length: int | None = field(default=None, metadata={"help": "skip longer sequences (default: model window)"})
    weights: str | None = field(default=None, metadata={
        "help": "fingerprint of the weights files (ctxrely.engine.fingerprint); other weights at the same path "
                "are not resumed"})

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1 or self.attn_batch_size < 1:
            raise ConfigError("shard_size, batch_size and attn_batch_size must be >= 1")
        if self.cs_quantile is not None and not 0 < self.cs_quantile < 1:
            raise ConfigError(f"cs_quantile must be in (0, 1), got {self.cs_quantile}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ScoreConfig:
        """Build from a dict through the one config loader (unknown keys and wrong types raise)."""
        from ctxrely import config

        return config.from_dict(cls, d, "score-data settings")


def shard_path(out_dir: str | Path, k: int) -> Path:
    return Path(out_dir) / "shards" / f"shard-{k:05d}.jsonl"


def chunks(examples: Sequence[SFTExample], size: int) -> list[Sequence[SFTExample]]:
    return [examples[i:i + size] for i in range(0, len(examples), size)]


def check_meta(out_dir: str | Path, config: ScoreConfig, source: dict[str, Any] | None = None, *,
               write: bool = True) -> None:
    """Write ``meta.json`` or check that the shards there were made with the same settings.

    ``source`` (file type, format, columns of the scored file) lets ``ctxrely filter`` write rows back
    in their original format.
    """
    from ctxrely.engine.resume import ResumeError, atomic_write, read_json

    p = Path(out_dir) / "meta.json"
    mine = {k: getattr(config, k) for k in SHARD_KEYS}
    if p.exists():
        meta = read_json(p, "the settings file of the shards there")
        old = meta.get("shard_settings") if isinstance(meta, dict) else None
        if not isinstance(old, dict):
            raise ResumeError(f"{p}: no 'shard_settings' object; move it away or use another --out")
        diff = {k: (old.get(k), v) for k, v in mine.items() if old.get(k) != v}
        if diff:
            what = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in diff.items())
            raise ConfigError(f"{out_dir} holds scores made with other settings ({what}); "
                              "use another --out or --overwrite")
    if not write:
        return
    atomic_write(p, json.dumps({"config": asdict(config), "shard_settings": mine, "source": source or {}}, indent=1))


def read_shard(path: Path, chunk: Sequence[SFTExample]) -> list[dict[str, Any]] | None:
    """The shard's rows if it is complete and matches ``chunk`` (ids and content hashes), else None."""
    if not path.exists():
        return None
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    if len(rows) != len(chunk):
        return None
    for r, ex in zip(rows, chunk, strict=True):
        if not isinstance(r, dict) or r.get("id") != ex.id or r.get("_hash") != example_hash(ex):
            return None
    return rows


def score_chunk(model: Any, tokenizer: Any, chunk: Sequence[SFTExample], config: ScoreConfig
                ) -> list[dict[str, Any]]:
    """Criticality (and attention) scores of one shard's examples."""
    from ctxrely.diagnose.attention_score import context_dependency
    from ctxrely.diagnose.criticality import score_criticality

    rows = score_criticality(model, tokenizer, chunk, batch_size=config.batch_size, progress=False,
                             template=config.template, cs_threshold=config.cs_threshold,
                             max_length=config.max_length)
    if config.attention:
        ok = [i for i, r in enumerate(rows) if not r.get("skipped")]
        att = context_dependency(model, tokenizer, [chunk[i] for i in ok], layer=config.layer,
                                 batch_size=config.attn_batch_size, template=config.template)
        for r in rows:
            r["attn_score"] = None
        for i, a in zip(ok, att, strict=True):
            rows[i]["attn_score"] = a
    for r, ex in zip(rows, chunk, strict=True):
        r["_hash"] = example_hash(ex)
    return rows


def run_shards(model: Any, tokenizer: Any, examples: Sequence[SFTExample], out_dir: str | Path,
               config: ScoreConfig, *, rank: int = 0, world_size: int = 1, progress: bool = True) -> list[int]:
    """Score this rank's unfinished shards; returns the shard numbers scored now."""
    parts = chunks(examples, config.shard_size)
    mine = [k for k in range(len(parts)) if k % world_size == rank]
    todo = [k for k in mine if read_shard(shard_path(out_dir, k), parts[k]) is None]
    if len(todo) < len(mine):
        log.info("rank %d: %d of %d shards already done; skipping them", rank, len(mine) - len(todo), len(mine))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(parts[k]) for k in todo), desc=f"scoring (rank {rank})" if world_size > 1
                   else "scoring", unit="ex", position=rank)
    try:
        with lockstep(model, "score-data"):  # sharded parameters: ranks stay in step; a failure stops all
            for k in todo:
                _score_shard(model, tokenizer, parts[k], k, out_dir, config, bar)
    finally:
        if bar:
            bar.close()
    return todo


def _score_shard(model: Any, tokenizer: Any, chunk: Sequence[SFTExample], k: int, out_dir: str | Path,
                 config: ScoreConfig, bar: Any) -> None:
    """Score one shard and write it atomically (a shard file is complete or absent)."""
    from ctxrely.engine.resume import atomic_write

    rows = score_chunk(model, tokenizer, chunk, config)
    atomic_write(shard_path(out_dir, k), "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))  # fsynced
    if bar:
        bar.update(len(chunk))


def join_shards(out_dir: str | Path, examples: Sequence[SFTExample], config: ScoreConfig
                ) -> list[dict[str, Any]] | None:
    """Join finished shards to the original rows in ``DIR/scores.jsonl``; None while shards are missing.

    Each line is the example's scores plus ``row`` (the original row, unchanged). Classes are set here,
    over the whole dataset, from ``cs_threshold`` or ``cs_quantile``.
    """
    from ctxrely.diagnose.criticality import reclassify

    rows: list[dict[str, Any]] = []
    for k, part in enumerate(chunks(examples, config.shard_size)):
        got = read_shard(shard_path(out_dir, k), part)
        if got is None:
            return None
        rows.extend(got)
    config.cs_threshold = reclassify(rows, cs_threshold=config.cs_threshold, cs_quantile=config.cs_quantile)
    out = Path(out_dir) / "scores.jsonl"
    tmp = out.with_name("scores.jsonl.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for r, ex in zip(rows, examples, strict=True):
            r.pop("_hash", None)
            f.write(json.dumps({**r, "row": ex.raw}, ensure_ascii=False) + "\n")
    tmp.replace(out)
    return rows


def read_scores(out_dir: str | Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``(rows of DIR/scores.jsonl, DIR/meta.json)``; errors name the file and line."""
    from ctxrely.data.schema import DataError

    d = Path(out_dir)
    p, m = d / "scores.jsonl", d / "meta.json"
    if not p.is_file() or not m.is_file():
        raise DataError("no scores.jsonl/meta.json here; run `ctxrely score-data` first", path=str(d))
    rows = []
    for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg}", path=str(p), line=i) from None
            if not isinstance(rows[-1], dict) or not isinstance(rows[-1].get("row"), dict):
                raise DataError("not a score row (an object with the original 'row'); rerun `ctxrely score-data`",
                                path=str(p), line=i)
    try:
        meta = json.loads(m.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise DataError(f"not a JSON object ({type(e).__name__}); rerun `ctxrely score-data`", path=str(m)) from None
    if not isinstance(meta, dict):
        raise DataError("not a JSON object; rerun `ctxrely score-data`", path=str(m))
    return rows, meta
