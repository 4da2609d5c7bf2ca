"""``ctxrely augment``: counterfactual augmentation of QA-style training data (NQ-Swap style).

Rows whose answer appears in their context get a copy (or, with ``--mode replace``, a replacement)
in which the answer entity is swapped, in context and response alike, for another entity of the
same type. Writes the rows in their original format plus ``OUT.manifest.json``.

Example:
    $ ctxrely augment --data train.jsonl --ratio 0.3 --out train.aug.jsonl
    $ ctxrely augment --data qa.csv --context-field passage --entities entities.json --out qa.aug.csv
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "augment"
HELP = "counterfactual augmentation: swap the answer entity in context and response (keeps the format)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ctxrely.cli.score_data_cmd import add_data_arguments

    add_data_arguments(p)
    p.add_argument("--out", required=True, help="output file (.jsonl, .json or .csv)")
    p.add_argument("--ratio", type=float, default=0.3, help="augmented rows as a share of the dataset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", default="add", choices=["add", "replace"],
                   help="append counterfactual copies (default) or replace the rows in place")
    p.add_argument("--entities", default=None,
                   help='JSON file of substitutes: {"city": ["Lima", ...], ...} or a list of names')


def run(args: argparse.Namespace) -> int:
    from ctxrely.data.records import file_type_of, write_rows
    from ctxrely.data.sft import load_sft
    from ctxrely.data.sft import read_sft_records as read_records
    from ctxrely.errors import ConfigError, DataError
    from ctxrely.mitigate.augment import augment
    from ctxrely.paths import refuse_overwrite

    refuse_overwrite(args.out, [("--data", args.data), ("--entities", args.entities)])
    if not args.ratio >= 0:
        raise ConfigError(f"--ratio must be >= 0, got {args.ratio}")
    data = load_sft(args.data, fmt=args.fmt, context_field=args.context_field,
                    context_template=args.context_template)  # validates every row (file, line, field)
    rows = [r for _, r in read_records(args.data)[0]]
    pool = None
    if args.entities:
        try:
            pool = json.loads(Path(args.entities).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read entities: {e}", path=args.entities) from None
        if not isinstance(pool, (dict, list)):
            raise DataError("expected a JSON object {type: [names]} or a list of names", path=args.entities)
        if not any(pool.values() if isinstance(pool, dict) else pool):
            raise DataError("no substitute names in it (an empty list or object), so no row could be "
                            "augmented; add names, or leave --entities out to use the built-in ones",
                            path=args.entities)
    res = augment(rows, ratio=args.ratio, seed=args.seed, entity_pool=pool, mode=args.mode, fmt=data.fmt,
                  context_field=args.context_field, context_template=args.context_template)
    write_rows(args.out, res.rows, file_type_of(args.out), columns=data.columns)
    mpath = Path(f"{args.out}.manifest.json")
    mpath.write_text(json.dumps({"source": args.data, "fmt": data.fmt, "ratio": args.ratio, "seed": args.seed,
                                 "mode": args.mode, "n_in": len(rows), "n_out": len(res.rows),
                                 "n_eligible": res.n_eligible, "n_requested": res.n_requested,
                                 "n_augmented": len(res.manifest), "n_left_mentions": res.n_left_mentions,
                                 "augmented": res.manifest},
                                indent=1, ensure_ascii=False))
    short = f" (asked for {res.n_requested}; {res.n_eligible} rows have their answer in the context" + (
        f", {res.n_left_mentions} skipped: part of the old name would have stayed" if res.n_left_mentions else ""
    ) + ")" if len(res.manifest) < res.n_requested else ""
    print(f"augmented {len(res.manifest)} of {len(rows)} rows{short}; wrote {args.out} ({len(res.rows)} rows) "
          f"and {mpath}")
    return 0
