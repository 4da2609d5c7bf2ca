"""``ctxrely graded``: adoption curves (by perturbation degree, by prior confidence) for any local model.

Built-in graded suites (``graded_years``, ``graded_numbers``, ``graded_names``; ``ctxrely eval``
on them writes the same curves) or a user's file graded on the fly (SQuAD-style passages whose
answers are numbers or years; answers that cannot be perturbed, or that their passage does not
state, are counted in ``summary.json["grading"]``). Writes ``summary.json`` (``adoption``: per
``degree`` and per ``prior`` bin, with intervals; ClashEval's table and its two corrections),
``examples.jsonl`` and ``adoption.png`` (the two curves).

Example:
    $ ctxrely graded --model smollm2-135m-instruct --suites graded_years,graded_numbers --out runs/graded
    $ ctxrely graded --model ./my-model --data squad_dev.json --limit 200 --decode cad --out runs/graded-cad
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ctxrely.cli.options import add_model_arguments, add_source_arguments

NAME = "graded"
HELP = "adoption of a wrong context by perturbation degree and by prior confidence (ClashEval curves)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ctxrely.cli.options import add_eval_arguments, add_intervention_arguments

    add_model_arguments(p)
    add_source_arguments(p.add_argument_group("what to grade (default: graded_years,graded_numbers)"))
    add_eval_arguments(p, max_new_tokens=12)
    p.add_argument("--out", default=None, help="output folder (default: runs/graded-<model>)")
    p.add_argument("--no-progress", action="store_true")
    add_intervention_arguments(p)


def run(args: argparse.Namespace) -> int:
    from ctxrely.cli.eval_cmd import check_eval_args, print_result
    from ctxrely.cli.options import settings_from_args
    from ctxrely.data.loaders import parse_mapping
    from ctxrely.engine.api import evaluate, resolve_suites
    from ctxrely.models.load import load_model, resolve_device
    from ctxrely.registry import load_builtins

    settings = settings_from_args(args)
    load_builtins()
    suites = [s.strip() for s in (args.suites or "").split(",") if s.strip()]
    if not suites and not args.data:
        suites = ["graded_years", "graded_numbers"]
    out = Path(args.out or f"runs/graded-{Path(args.model).name}")
    check_eval_args(args, out)
    mapping = parse_mapping(args.mapping) if args.mapping else None
    suite_objs = resolve_suites(suites, args.data, None, settings.limit, mapping)  # bad files fail before the load
    model, tok = load_model(args.model, dtype=args.dtype, device=resolve_device(args.device),
                            trust_remote_code=args.trust_remote_code)
    res = evaluate(model, tok, suite_objs, settings=settings, progress=not args.no_progress, out_dir=out,
                   model_name=args.model, grade=True, prior=True)
    print_result(res, out)
    from ctxrely.report.adoption import format_ci as _ci
    from ctxrely.report.adoption import plot_adoption

    png = plot_adoption([out], out / "adoption.png")
    for name, a in res.summary["adoption"].items():
        print(f"{name}: adoption by degree " + ", ".join(f"{p['degree_label']} {_ci(p['adopt'])}" for p in a["by_degree"]))
        print(f"{name}: adoption by prior p(true answer) "
              + ", ".join(f"<={b['prior_hi']:g} {_ci(b['adopt'])} (n={b['n']})" for b in a["by_prior"] if b["n"]))
        ce = a["clasheval"]
        print(f"{name}: accuracy {_ci(ce['accuracy'])}, context bias {_ci(ce['context_bias'])}, "
              f"prior bias {_ci(ce['prior_bias'])}")
    for name, rep in res.summary.get("grading", {}).items():
        if rep["skipped"]:
            print(f"{name}: graded {rep['n_graded']} of {rep['n_source']} items; skipped {rep['skipped']}")
    print(f"wrote {png}")
    return 0
