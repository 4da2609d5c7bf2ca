"""Export ctxrely suites as lm-evaluation-harness tasks (``ctxrely export-lm-eval``).

For every suite, ``DIR/<suite>/`` gets the rendered examples (``data.jsonl``: prompt, continuations,
targets, aliases), a copy of :mod:`ctxrely.integrations.lmeval.helper` as ``utils.py`` (so the folder needs only
lm-eval), and two task YAMLs:

- ``<prefix>_<suite>_gen`` (``generate_until``): greedy decoding with ctxrely's stop strings and
  ``max_gen_toks``; metrics cf_acc, param_acc, cf_only, param_only, both, neither, computed by the
  same SQuAD-style containment as ``ctxrely eval --mode generate``.
- ``<prefix>_<suite>_mc`` (``multiple_choice``): choices [cf, param] written as ctxrely's own
  continuations with ``target_delimiter: ""`` so lm-eval splits tokens exactly as ctxrely's logit
  scorer does; ``acc`` equals ctxrely's ``logit_cf_rate``, plus m_c and logp_margin.

``DIR/<prefix>_gen.yaml`` / ``<prefix>_mc.yaml`` group the tasks (pooled, size-weighted means) and
``DIR/<prefix>.yaml`` groups both. Every YAML's ``metadata`` carries the suite version and content
hash and the prompt format's name, version and hash.

Example:
    >>> from ctxrely.data.schema import ConflictExample
    >>> ex = ConflictExample("0", "demo", "Paris moved to Lyon.", "Capital of France?", "Lyon", "Paris")
    >>> tasks = export_lm_eval("/tmp/lmeval-tasks", examples=[ex])  # doctest: +SKIP
    >>> [t.name for t in tasks]  # doctest: +SKIP
    ['ctxrely_demo_gen', 'ctxrely_demo_mc']

    $ lm_eval --model hf --model_args pretrained=./my-model --include_path /tmp/lmeval-tasks --tasks ctxrely
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ctxrely.data.schema import ConflictExample, Suite
from ctxrely.engine.generate import DEFAULT_STOP
from ctxrely.metrics import table
from ctxrely.paths import inside
from ctxrely.prompts import PromptFormat, get_format

GEN_METRICS = tuple(m.lmeval for m in table.metrics(family="conflict", mode="generate", lmeval=True))
MC_METRICS = tuple(m.lmeval for m in table.metrics(family="conflict", mode="logits", lmeval=True))
HIGHER_IS_BETTER = {m.lmeval: m.higher_is_better for m in table.metrics(family="conflict", lmeval=True)}


@dataclass(frozen=True)
class ExportedTask:
    """One written lm-eval task (or group)."""

    name: str
    kind: str  # "generate_until" | "multiple_choice" | "group"
    yaml_path: Path
    n_docs: int


def task_name(prefix: str, suite: str, fmt: PromptFormat, kind: str) -> str:
    """``<prefix>_<suite>[_<format>]_<kind>`` in lower-case letters, digits and underscores."""
    parts = [prefix, suite] + ([] if fmt.name == "raw" else [fmt.name]) + [kind]
    return re.sub(r"[^a-z0-9]+", "_", "_".join(parts).lower()).strip("_")


def export_rows(examples: Sequence[ConflictExample], fmt: PromptFormat, tokenizer: Any = None,
                max_length: int | None = None, reserve: int = 32, indicator: str | None = None,
                match: str = "squad") -> list[dict[str, Any]]:
    """The rows of ``data.jsonl``: rendered prompt and both continuations per example.

    With a ``tokenizer`` and ``max_length`` contexts are shortened as ``ctxrely eval`` does
    (never the question); otherwise prompts are written whole.
    """
    from ctxrely.engine.prompting import build_prompts, continuation, render

    if fmt.chat and tokenizer is None:
        from ctxrely.errors import ConfigError

        raise ConfigError(f"format {fmt.name!r} renders through a chat template: pass a tokenizer (--tokenizer)")
    if tokenizer is not None and max_length is not None:
        prompts = [(p.text, p.context_truncated)
                   for p in build_prompts(list(examples), fmt, tokenizer, max_length, reserve, indicator)]
    else:
        prompts = [(render(ex, fmt, tokenizer, suffix=indicator), False) for ex in examples]
    rows = []
    for ex, (text, cut) in zip(examples, prompts, strict=True):
        cf_c = continuation(text, ex.cf_answer)
        pa_c = None if ex.param_answer is None else continuation(text, ex.param_answer)
        rows.append({
            "id": ex.id, "suite": ex.suite, "prompt": text,
            "cf_answer": ex.cf_answer, "param_answer": ex.param_answer,
            "cf_targets": ex.cf_targets(), "param_targets": ex.param_targets(),
            "cf_continuation": cf_c, "param_continuation": pa_c,
            "choices": [cf_c] if pa_c is None else [cf_c, pa_c],
            "match": match, "context_truncated": cut,
        })
    return rows


def export_lm_eval(
    out_dir: str | Path,
    suites: Sequence[str | Suite] | None = None,
    *,
    data: Sequence[str] | str | None = None,
    examples: Sequence[ConflictExample] | None = None,
    mapping: dict[str, str] | None = None,
    fmt: str | PromptFormat = "raw",
    tokenizer: Any = None,
    max_length: int | None = None,
    max_new_tokens: int = 32,
    stop: Sequence[str] | None = None,
    match: str = "squad",
    indicator: str | None = None,
    limit: int | None = None,
    prefix: str = "ctxrely",
    settings: Any = None,
) -> list[ExportedTask]:
    """Write lm-eval task folders for suites, data files or examples; return what was written.

    Args:
        out_dir: folder to write (pass it to lm-eval as ``--include_path``).
        suites: built-in suite names or ``Suite`` objects; default every built-in suite when no
            ``data``/``examples`` are given.
        fmt: prompt format name or template; chat formats need ``tokenizer``.
        max_length: with ``tokenizer``, shorten contexts to fit this window (as ``ctxrely eval``).
        max_new_tokens, stop: generation settings of the ``_gen`` task (stop: ctxrely's defaults).
        prefix: task-name prefix; the top group is called ``prefix``.
        settings: an :class:`~ctxrely.engine.settings.EvalSettings` giving ``fmt``, ``max_new_tokens``,
            ``stop``, ``match``, ``indicator`` and ``limit`` at once (the same object ``evaluate`` takes).
    """
    from ctxrely.engine.api import resolve_suites
    from ctxrely.paths import safe_name

    safe_name(prefix, "--prefix")  # it names files in out_dir: no '/', '..' or other path parts
    if settings is not None:
        fmt, max_new_tokens, match, indicator = (settings.prompt_format, settings.max_new_tokens, settings.match,
                                                 settings.indicator)
        stop, limit = settings.stop, settings.limit
    pf = fmt if isinstance(fmt, PromptFormat) else get_format(fmt)
    if suites is None and data is None and not examples:
        from ctxrely.registry import SUITES

        suites = SUITES.names()
    suite_list = resolve_suites(suites, data, None, limit, mapping) if (suites or data) else []
    suite_list += _inline_suites(examples or (), limit)
    from ctxrely.integrations.lmeval.graded import expand_graded

    parts = expand_graded(suite_list)  # graded suites: also one task pair per degree, and the closed-book prior
    pooled = {s.name for s in suite_list}  # the top groups pool these (each item once)
    suite_list = parts
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    helper = helper_source()
    fmt_meta = {"format": pf.name, "format_version": pf.version, "format_hash": pf.chat_hash(tokenizer)}
    stop_list = list(DEFAULT_STOP if stop is None else stop)
    written: list[ExportedTask] = []
    seen: dict[str, str] = {}
    task_suite: dict[str, str] = {}
    for suite in suite_list:
        gen_name, mc_name = (task_name(prefix, suite.name, pf, k) for k in ("gen", "mc"))
        if gen_name in seen:
            raise ValueError(f"suites {seen[gen_name]!r} and {suite.name!r} map to one task name {gen_name!r}")
        seen[gen_name] = suite.name
        folder = inside(out, out / suite_folder(suite.name))
        folder.mkdir(parents=True, exist_ok=True)
        rows = export_rows(suite.examples, pf, tokenizer, max_length, max_new_tokens, indicator, match)
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        inside(out, folder / "data.jsonl").write_text(text, encoding="utf-8")
        inside(out, folder / "utils.py").write_text(helper, encoding="utf-8")  # lm-eval imports and runs it
        meta = {"version": suite.version, "suite": suite.name, "suite_version": suite.version,
                "suite_hash": suite.hash, **fmt_meta, "match": match, "indicator": indicator,
                "data_sha256": hashlib.sha256(text.encode()).hexdigest()[:16], "exported_by": _exporter()}
        gen = _gen_yaml(gen_name, stop_list, max_new_tokens, meta)
        mc = _mc_yaml(mc_name, meta)
        inside(out, folder / "gen.yaml").write_text(gen, encoding="utf-8")
        inside(out, folder / "mc.yaml").write_text(mc, encoding="utf-8")
        n_mc = sum(1 for r in rows if r["param_answer"] is not None)
        written += [ExportedTask(gen_name, "generate_until", folder / "gen.yaml", len(rows)),
                    ExportedTask(mc_name, "multiple_choice", folder / "mc.yaml", n_mc)]
        task_suite[gen_name] = task_suite[mc_name] = suite.name
    written += _write_groups(out, prefix, [t for t in written if task_suite[t.name] in pooled], fmt_meta)
    return written


def suite_folder(name: str) -> str:
    """The folder of a suite in the export: its name in ``[a-z0-9_]`` (a name with none is refused).

    Example:
        >>> suite_folder("CF-Capitals.v2")
        'cf_capitals_v2'
    """
    folder = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not folder:
        from ctxrely.errors import ConfigError

        raise ConfigError(f"suite name {name!r} (a data file's name without its suffix) has no letters or digits "
                          "to name its task folder; rename the file")
    return folder


def _inline_suites(examples: Sequence[ConflictExample], limit: int | None) -> list[Suite]:
    """In-memory examples as one suite per distinct ``example.suite`` (first-seen order)."""
    by_suite: dict[str, list[ConflictExample]] = {}
    for ex in examples:
        by_suite.setdefault(ex.suite, []).append(ex)
    return [Suite(name, "inline", exs[:limit] if limit is not None else exs, source="inline")
            for name, exs in by_suite.items()]


def _exporter() -> str:
    from ctxrely.version import __version__

    return f"ctxrely {__version__}"


_BEGIN, _END = "# ---- matching: ", "# ---- end of matching ----"


def helper_source() -> str:
    """The exported ``utils.py``: :mod:`.helper` with its ``ctxrely.metrics.matching`` import
    replaced by that module's code (imports, constants, functions), so it needs no ctxrely."""
    from ctxrely.integrations.lmeval import helper
    from ctxrely.metrics import matching

    text = Path(helper.__file__).read_text(encoding="utf-8")
    src = Path(matching.__file__).read_text(encoding="utf-8")
    tree = ast.parse(src)
    body = [n for n in tree.body[1:] if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
    code = "\n".join(ast.get_source_segment(src, n) or "" for n in body if isinstance(n, (ast.Import, ast.ImportFrom)))
    code += "\n\n" + "\n\n\n".join(ast.get_source_segment(src, n) or "" for n in body
                                    if not isinstance(n, (ast.Import, ast.ImportFrom)))
    a = text.index(_BEGIN)
    b = text.index(_END, a) + len(_END)
    header = "# ---- matching: generated from ctxrely.metrics.matching by ctxrely export-lm-eval ----\n"
    return text[:a] + header + code + "\n" + text[b - len(_END):]


def _dump(cfg: dict[str, Any], functions: dict[str, str]) -> str:
    """YAML text of ``cfg`` plus ``key: !function utils.<name>`` lines (not expressible in safe_dump)."""
    import yaml

    body = yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=1000)
    fn = "".join(f"{k}: !function utils.{v}\n" for k, v in functions.items())
    return "# written by ctxrely export-lm-eval; edit the suite, not this file\n" + fn + body


def _gen_yaml(name: str, stop: list[str], max_new_tokens: int, meta: dict[str, Any]) -> str:
    cfg = {
        "task": name, "dataset_path": "", "output_type": "generate_until", "test_split": "test",
        "doc_to_text": "prompt", "doc_to_target": "cf_answer", "target_delimiter": "",
        "generation_kwargs": {"until": stop, "do_sample": False, "temperature": 0.0, "max_gen_toks": max_new_tokens},
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": HIGHER_IS_BETTER[m]}
                        for m in GEN_METRICS],
        "metadata": meta,
    }
    return _dump(cfg, {"custom_dataset": "load", "process_results": "process_generation"})


def _mc_yaml(name: str, meta: dict[str, Any]) -> str:
    cfg = {
        "task": name, "dataset_path": "", "output_type": "multiple_choice", "test_split": "test",
        "doc_to_text": "prompt", "doc_to_choice": "choices", "doc_to_target": 0, "target_delimiter": "",
        "metric_list": [{"metric": m, "aggregation": "mean", "higher_is_better": HIGHER_IS_BETTER[m]}
                        for m in MC_METRICS],
        "metadata": meta,
    }
    return _dump(cfg, {"custom_dataset": "load", "process_docs": "with_param", "process_results": "process_choice"})


def _write_groups(out: Path, prefix: str, tasks: list[ExportedTask], fmt_meta: dict[str, Any]) -> list[ExportedTask]:
    import yaml

    groups: list[ExportedTask] = []
    for kind, suffix, metrics in (("generate_until", "gen", GEN_METRICS), ("multiple_choice", "mc", MC_METRICS)):
        members = [t for t in tasks if t.kind == kind]
        cfg = {"group": f"{prefix}_{suffix}", "task": [t.name for t in members],
               "aggregate_metric_list": [{"metric": m, "aggregation": "mean", "weight_by_size": True}
                                         for m in metrics],
               "metadata": {"version": 1, **fmt_meta}}
        path = inside(out, out / f"{prefix}_{suffix}.yaml")
        path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
        groups.append(ExportedTask(cfg["group"], "group", path, sum(t.n_docs for t in members)))
    cfg = {"group": prefix, "task": [g.name for g in groups], "metadata": {"version": 1, **fmt_meta}}
    path = inside(out, out / f"{prefix}.yaml")
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    groups.append(ExportedTask(prefix, "group", path, sum(g.n_docs for g in groups)))
    return groups
