"""Build (once) and cache the data of a lab experiment: closed-book probe, mixture, ID rows, conflicts.

Everything lands in ``<out>/data/`` and is reused on restart while the data fingerprint (model name and weights,
prompt format, data settings of the preset) is unchanged:

* ``probe.jsonl``: one record per probed fact (first line: the fingerprint), written as the probe
  finishes, so a restart never probes again;
* ``suite_probe.json``: which items of the built-in suites the model knows;
* ``mixture.jsonl`` (training rows with ``cls``), ``id.jsonl`` (in-distribution rows),
  ``conflicts.jsonl`` (held-out conflict items, :class:`ConflictExample` dicts) and ``data.json``
  (counts: facts probed and known per relation, rows per class).

Example:
    >>> data = prepare_data(get_preset("short"), model, tok, "runs/lab")  # doctest: +SKIP
    >>> data.stats["known"], len(data.train), sorted(data.eval_sets)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxrely.data.schema import ConflictExample
from ctxrely.errors import ConfigError
from ctxrely.lab.closed_book import PROBE_VERSION, fact_key, lab_format, probe_facts
from ctxrely.lab.heldout import HELDOUT_VERSION, SUITE, conflict_items, known_suite_items
from ctxrely.lab.mixture import (
    MIXTURE_VERSION,
    build_mixture,
    class_counts,
    fictional_facts,
    in_distribution_rows,
    split_by_subject,
)
from ctxrely.lab.presets import LabPreset
from ctxrely.provenance import config_hash

log = logging.getLogger(__name__)
DATA_FIELDS = ("model", "relations", "facts_per_relation", "probe_method", "probe", "n_heldout", "heldout_style",
               "eval_suites", "eval_suite_limit", "n_train", "fractions", "n_id", "data_seed")


@dataclass
class LabData:
    """What every run of one lab experiment trains and evaluates on."""

    fmt: str
    train: list[dict[str, Any]]
    id_rows: list[dict[str, Any]]
    eval_sets: dict[str, list[ConflictExample]]
    stats: dict[str, Any] = field(default_factory=dict)


def select_facts(preset: LabPreset) -> list[Any]:
    """The facts to probe: the preset's relations (all when empty), at most ``facts_per_relation`` each."""
    from ctxrely.data.facts import load_facts, relations

    rels = preset.relations or relations()
    rng = random.Random(preset.data_seed)
    out = []
    for rel in rels:
        try:
            facts = load_facts(rel)
        except KeyError as e:
            raise ConfigError(f"lab preset {preset.name!r}: field 'relations': {e.args[0]}") from e
        if preset.facts_per_relation and len(facts) > preset.facts_per_relation:
            facts = rng.sample(facts, preset.facts_per_relation)
        out.extend(facts)
    return out


def _write_jsonl(path: Path, rows: list[dict[str, Any]], header: dict[str, Any] | None = None) -> None:
    """Write a cache file atomically and fsynced (:func:`ctxrely.engine.resume.atomic_write`)."""
    from ctxrely.engine.resume import atomic_write

    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ([header] if header else []) + rows))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON-object lines of a cache file (damaged lines skipped with one line each)."""
    from ctxrely.engine.resume import iter_rows

    return [r for _, r in iter_rows(path, what="cached record")]


def _cached_probe(path: Path, fingerprint: str, run: Callable[[], list[dict[str, Any]]],
                  n: int | None = None) -> list[dict[str, Any]]:
    """The probe records cached under ``fingerprint`` (``n`` of them), else ``run()``'s, then cached.

    A cache of other settings, or a damaged one, is kept aside (``probe.<fingerprint>.jsonl`` /
    ``probe.unreadable.jsonl``) with one log line, never deleted.
    """
    if path.exists():
        rows = _read_jsonl(path)
        head = rows[0].get("fingerprint") if rows else None
        body = rows[1:]
        if head == fingerprint and (n is None or len(body) == n) and all("known" in r for r in body):
            return body
        _keep_aside(path, head if isinstance(head, str) and head != fingerprint else "unreadable")
    rows = run()
    _write_jsonl(path, rows, {"fingerprint": fingerprint})
    return rows


def _keep_aside(path: Path, tag: str) -> None:
    from ctxrely.engine.resume import keep_aside

    dest = keep_aside(path, tag)
    log.warning("%s: %s; kept as %s, computing it again", path,
                "damaged or incomplete" if tag == "unreadable" else "made with other settings", dest.name)


def prepare_data(preset: LabPreset, model: Any, tokenizer: Any, out_dir: str | Path, *, progress: bool = True,
                 say: Callable[[str], None] = log.info) -> LabData:
    """Probe the model, then build the mixture, ID rows and conflict sets (cached in ``out_dir/data``)."""
    from ctxrely.data.facts import load_facts
    from ctxrely.engine.fingerprint import weights_fingerprint

    data_dir = Path(out_dir) / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    fmt = lab_format(tokenizer)
    facts = select_facts(preset)
    fp = config_hash({**{k: getattr(preset, k) for k in DATA_FIELDS}, "fmt": fmt.chat_hash(tokenizer),
                      "facts": [fact_key(f) for f in facts], "versions": [MIXTURE_VERSION, HELDOUT_VERSION, PROBE_VERSION],
                    "weights": weights_fingerprint(model)})  # the weights, not only the model's name, key the caches
    if preset.probe:
        say(f"closed-book probe of {len(facts)} facts ({preset.probe_method}, {fmt.name} format)")
        recs = _cached_probe(data_dir / "probe.jsonl", fp, lambda: probe_facts(
            model, tokenizer, facts, fmt=fmt, method=preset.probe_method,  # type: ignore[arg-type]
            batch_size=preset.eval_batch_size, progress=progress), n=len(facts))
        known = [f for f, r in zip(facts, recs, strict=True) if r["known"]]
    else:
        say(f"probe disabled: all {len(facts)} facts are treated as known (tiny random models only)")
        known = list(facts)
    per_rel = {rel: [sum(1 for f in facts if f.relation == rel), sum(1 for f in known if f.relation == rel)]
               for rel in sorted({f.relation for f in facts})}
    say(f"the model knows {len(known)} of {len(facts)} facts closed-book")
    if len(known) < preset.n_heldout + 4:
        raise ConfigError(f"only {len(known)} facts are known closed-book, too few to hold out "
                          f"n_heldout={preset.n_heldout} and train on the rest; lower n_heldout or add relations")
    train_facts, held = split_by_subject(known, preset.n_heldout, seed=preset.data_seed)
    pool = [f for rel in per_rel for f in load_facts(rel)]
    eval_sets = {SUITE: conflict_items(held, pool, seed=preset.data_seed,
                                       style=preset.heldout_style)}  # type: ignore[arg-type]
    if preset.eval_suites:
        eval_sets.update(_suite_items(preset, model, tokenizer, data_dir, fp, [f.obj for f in train_facts],
                                      progress))
    n_c = preset.n_train - round(preset.n_train * preset.fractions[1]) - round(preset.n_train * preset.fractions[2])
    fict = fictional_facts(sorted(per_rel), n_c + preset.n_id, seed=preset.data_seed, strict=False)
    fict_id, fict_train = fict[:preset.n_id // 2 + preset.n_id % 2], fict[preset.n_id // 2 + preset.n_id % 2:]
    train = build_mixture(train_facts, fmt, tokenizer, n_rows=preset.n_train,
                          fractions=tuple(preset.fractions), seed=preset.data_seed,  # type: ignore[arg-type]
                          fictional=fict_train, distractors=train_facts)
    id_rows = in_distribution_rows(fict_id, held, fmt, tokenizer, n=preset.n_id, seed=preset.data_seed)
    stats = {"fingerprint": fp, "format": fmt.name, "probed": len(facts), "known": len(known),
             "per_relation": per_rel, "train_facts": len(train_facts), "heldout_facts": len(held),
             "fictional": len(fict_train), "train_classes": class_counts(train), "id": class_counts(id_rows),
             "eval_sets": {k: len(v) for k, v in eval_sets.items()}}
    _write_jsonl(data_dir / "mixture.jsonl", train)
    _write_jsonl(data_dir / "id.jsonl", id_rows)
    _write_jsonl(data_dir / "conflicts.jsonl", [ex.to_dict() for exs in eval_sets.values() for ex in exs])
    (data_dir / "data.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    return LabData(fmt=fmt.name, train=train, id_rows=id_rows, eval_sets=eval_sets, stats=stats)


def _suite_items(preset: LabPreset, model: Any, tokenizer: Any, data_dir: Path, fp: str, trained: list[str],
                 progress: bool) -> dict[str, list[ConflictExample]]:
    """Built-in suite items the model knows, minus those whose answer is a trained object (cached)."""
    from ctxrely.data.suites import load_suite

    path = data_dir / "suite_probe.json"
    doc: Any = {}
    if path.exists():
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        known = doc.get("known") if isinstance(doc, dict) else None
        if isinstance(known, dict) and doc.get("fingerprint") == fp and set(known) == set(preset.eval_suites) \
                and all(isinstance(ids, list) for ids in known.values()):
            out = {}
            for name, ids in known.items():
                keep = set(map(str, ids))
                out[name] = [ex for ex in load_suite(name).examples if ex.id in keep]
            return out
        fp_old = doc.get("fingerprint") if isinstance(doc, dict) else None
        _keep_aside(path, fp_old if isinstance(fp_old, str) and isinstance(known, dict) else "unreadable")
    sets = known_suite_items(model, tokenizer, preset.eval_suites, limit=preset.eval_suite_limit,
                             exclude_answers=trained, method=preset.probe_method,
                             batch_size=preset.eval_batch_size, progress=progress)
    from ctxrely.engine.resume import atomic_write

    atomic_write(path, json.dumps({"fingerprint": fp, "known": {k: [ex.id for ex in v] for k, v in sets.items()}}))
    return sets
