"""``ctxrely score-data``: which training examples need their context, and which the model already knows.

Writes ``DIR/shards/*.jsonl`` (resumable), ``DIR/scores.jsonl`` (scores joined to the original rows),
``DIR/summary.json`` and histogram PNGs. Runs on several processes with ``accelerate launch``.

Example:
    $ ctxrely score-data --model smollm2-135m-instruct --data train.jsonl --out runs/scores
    $ ctxrely score-data --model ./m --data qa.jsonl --context-template "Context: {context}\\n\\nQ: {question}" \\
        --out runs/scores
    $ accelerate launch -m ctxrely.cli.main score-data --model ./m --data train.jsonl --out runs/scores
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import Any

NAME = "score-data"
HELP = "score training data: response NLL with/without context (C / C+S / S) and attention context-dependency"
log = logging.getLogger(__name__)


def add_data_arguments(p: argparse.ArgumentParser) -> None:
    """--data/--row-format/--context-field/--context-template, shared with ``ctxrely augment``."""
    from ctxrely.cli.options import add_sft_data_arguments

    add_sft_data_arguments(p)


def _template(name: str) -> str:
    return "plain" if name == "raw" else name  # nih / attention call the bare-text rendering "raw"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ctxrely.cli.eval_cmd import add_model_arguments

    add_model_arguments(p)
    add_data_arguments(p)
    p.add_argument("--out", required=True, help="output folder (resumes when it holds shards)")
    p.add_argument("--template", default="auto", choices=["auto", "chat", "plain"], type=_template,
                   help="how rows become model input: chat template, Alpaca/plain text (raw is accepted for "
                        "plain, as in ctxrely nih), or auto by format")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass")
    p.add_argument("--attn-batch-size", type=int, default=4, help="sequences per forward pass (attention)")
    p.add_argument("--shard-size", type=int, default=256, help="examples per shard (unit of resumption)")
    p.add_argument("--no-attention", action="store_true", help="skip the attention-based score")
    p.add_argument("--layer", type=int, default=None, help="layer for the attention score (default: middle)")
    p.add_argument("--cs-threshold", type=float, default=1.0, help="C+S when NLL without context <= this")
    p.add_argument("--cs-quantile", type=float, default=None,
                   help="instead: C+S for the lowest q of NLL without context (e.g. 0.25)")
    p.add_argument("--attn-threshold", type=float, default=0.6, help="reported share above this score")
    p.add_argument("--max-length", type=int, default=None, help="skip longer sequences (default: model window)")
    p.add_argument("--limit", type=int, default=None, help="first n rows only")
    p.add_argument("--skip-bad", action="store_true", help="leave out malformed rows (listed in DIR/errors.jsonl)")
    p.add_argument("--overwrite", action="store_true", help="discard earlier shards in --out")
    p.add_argument("--no-progress", action="store_true")


def _dist() -> tuple[int, int, object | None]:
    """``(rank, world_size, accelerate state)``; the state is None for a single process."""
    from ctxrely.engine.distributed import launch_info

    if launch_info()[1] <= 1:
        return 0, 1, None
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes, state


def run(args: argparse.Namespace) -> int:
    from ctxrely.data.sft import load_sft
    from ctxrely.diagnose.shards import ScoreConfig
    from ctxrely.engine.fingerprint import path_fingerprint
    from ctxrely.engine.resume import RunLock

    data = load_sft(args.data, fmt=args.fmt, context_field=args.context_field,
                    context_template=args.context_template, limit=args.limit, skip_bad=args.skip_bad)
    cfg = ScoreConfig(model=args.model, data=args.data, fmt=data.fmt, context_field=args.context_field,
                      context_template=args.context_template, template=args.template, batch_size=args.batch_size,
                      attn_batch_size=args.attn_batch_size, shard_size=args.shard_size,
                      attention=not args.no_attention, layer=args.layer, cs_threshold=args.cs_threshold,
                      cs_quantile=args.cs_quantile, max_length=args.max_length,
                      weights=path_fingerprint(args.model))  # re-saved weights at the same path: not resumed
    rank, world, state = _dist()
    out = Path(args.out)
    with RunLock(out, rank, world):  # one job per --out: a second one is refused with one line
        return _score(args, data, cfg, rank, world, state, out)


def _score(args: argparse.Namespace, data: Any, cfg: Any, rank: int, world: int, state: Any, out: Path) -> int:
    """The job under the run lock: settings check, this rank's shards, the join and summary."""
    from ctxrely.diagnose.shards import check_meta, join_shards, run_shards
    from ctxrely.diagnose.summary import summarize_scores
    from ctxrely.models.load import load_model

    if rank == 0:
        if args.overwrite and out.exists():
            for name in ("shards", "meta.json", "scores.jsonl", "summary.json"):
                target = out / name
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        check_meta(out, cfg, {"path": data.path, "file_type": data.file_type, "fmt": data.fmt,
                              "columns": data.columns})
        _write_errors(out, [str(e) for e in data.errors])
    if state is not None:
        state.wait_for_everyone()
        check_meta(out, cfg, write=False)  # every rank checks what rank 0 wrote
    device = args.device
    if state is not None and device == "cpu":
        device = str(state.device)
    model, tok = load_model(args.model, dtype=args.dtype, device=device, trust_remote_code=args.trust_remote_code)
    done = run_shards(model, tok, data.examples, out, cfg, rank=rank, world_size=world,
                      progress=not args.no_progress)
    if state is not None:
        state.wait_for_everyone()
    if rank != 0:
        return 0
    rows = join_shards(out, data.examples, cfg)
    if rows is None:
        print(f"scored {len(done)} shard(s) into {out / 'shards'}; others are missing (another rank still "
              "running?); rerun to finish")
        return 1
    s = summarize_scores(rows, data.examples, out, cs_threshold=cfg.cs_threshold, attn_threshold=args.attn_threshold,
                  config={**vars(cfg)}, errors=[str(e) for e in data.errors])
    _print(s, out)
    return 0


def _write_errors(out: Path, errors: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    p = out / "errors.jsonl"
    if errors:
        p.write_text("".join(json.dumps({"error": e}) + "\n" for e in errors))
        log.warning("left out %d malformed row(s); see %s", len(errors), p)
    else:
        p.unlink(missing_ok=True)


def _print(s: dict, out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"ctxrely score-data ({s['n']} rows)")
    for c in ("class", "rows", "share"):
        t.add_column(c)
    for c, n in s["class_counts"].items():
        t.add_row(c, str(n), f"{s['class_shares'][c]:.1%}")
    if s["n_skipped"]:
        t.add_row("skipped (too long)", str(s["n_skipped"]), "")
    console = Console()
    console.print(t)
    for key in ("nll_with", "nll_without", "gain", "attn_score"):
        st = s["stats"].get(key)
        if st:
            console.print(f"{key:12s} mean {st['mean']:.3f}  median {st['median']:.3f}  "
                          f"[{st['min']:.3f}, {st['max']:.3f}]")
    console.print(f"wrote {out / 'scores.jsonl'}, {out / 'summary.json'}"
                  + (f" and {len(s['histograms'])} histogram(s)" if s["histograms"] else ""))
