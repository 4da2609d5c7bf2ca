"""Lab data: closed-book answer matching, mixture classes and formats, held-out conflicts, presets."""

from __future__ import annotations

import dataclasses

import pytest

from ctxrely.data.facts import closed_book_statement, load_facts, question_for, relations
from ctxrely.errors import ConfigError
from ctxrely.lab.closed_book import answers_with, fact_key, subject_phrases
from ctxrely.lab.heldout import PASSAGES, conflict_items, counterfactual
from ctxrely.lab.mixture import (
    build_mixture,
    class_counts,
    fictional_facts,
    in_distribution_rows,
    split_by_subject,
)
from ctxrely.lab.presets import PRESETS, RUNS, LabPreset, get_preset, preset_from_dict
from ctxrely.metrics.matching import normalize_answer
from ctxrely.prompts import get_format


@pytest.mark.parametrize("output,targets,echoes,want", [
    ("The capital city of Afghanistan is Kabul.", ["Kabul"], ["Afghanistan"], True),
    ("The capital city of Guinea-Bissau is Porto.", ["Bissau"], ["Guinea-Bissau"], False),
    ("Guinea-Bissau's capital is Bissau.", ["Bissau"], ["Guinea-Bissau"], True),
    ("The capital of Djibouti is Djibouti.", ["Djibouti"], ["Djibouti"], True),
    ("Djibouti is a country in Africa.", ["Djibouti"], ["Djibouti"], False),
    ("The capital of Mexico is Mexico City.", ["Mexico City"], ["Mexico"], True),
    ("It is Kabulistan.", ["Kabul"], [], False),
    ("Written by Thomas Alva Edison", ["Thomas Edison", "Thomas Alva Edison"], [], True),
])
def test_answers_with(output, targets, echoes, want):
    assert answers_with(output, targets, echoes) is want


def test_subject_phrases():
    assert "Westminster Abbey" in subject_phrases("In which country is Westminster Abbey located?")


def _known(n=60):
    facts = [f for rel in ("capital", "author", "landmark_country") for f in load_facts(rel)[:n // 3]]
    return facts


@pytest.mark.parametrize("fmt_name", ["raw", "chat"])
def test_mixture_classes_and_formats(tiny_tokenizer, fmt_name):
    fmt = get_format(fmt_name)
    rows = build_mixture(_known(), fmt, tiny_tokenizer, n_rows=50, fractions=(0.4, 0.4, 0.2), seed=1)
    assert class_counts(rows) == {"C": 20, "C+S": 20, "S": 10}
    real = {fact_key(f) for f in load_facts()}
    for r in rows:
        user = r["prompt"][0]["content"] if fmt.chat else r["prompt"]
        completion = r["completion"][0]["content"] if fmt.chat else r["completion"]
        assert r["question"] in user and completion.strip() == r["answer"]
        if r["cls"] == "S":
            assert r["context"] == "" and not user.startswith(r["answer"])
        else:  # the context states the fact, verbatim inside the prompt (scorers cut it out)
            assert r["context"] and r["context"] in user and r["answer"] in r["context"]
        # C points are about invented entities, C+S and S points about real ones
        assert (r["key"] in real) is (r["cls"] != "C")
    if not fmt.chat:
        assert rows[0]["prompt"].endswith("Answer:") and rows[0]["completion"].startswith(" ")


def test_mixture_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        build_mixture(_known(), get_format("raw"), None, n_rows=10, fractions=(0.5, 0.5, 0.5))


def test_fictional_facts_are_invented_and_distinct():
    facts = fictional_facts(relations(), 200, seed=3)
    subjects = [f.subject for f in facts]
    assert len(set(subjects)) == 200
    real = {normalize_answer(f.subject) for f in load_facts()} | {normalize_answer(f.obj) for f in load_facts()}
    assert not any(normalize_answer(s) in real for s in subjects)
    assert {f.relation for f in facts} == set(relations())
    assert all(question_for(f) and closed_book_statement(f) for f in facts)
    with pytest.raises(ValueError, match="could only invent"):
        fictional_facts(["capital"], 500, seed=0)  # only 48 invented countries ship
    assert len(fictional_facts(["capital"], 500, seed=0, strict=False)) == 48


def test_split_by_subject_keeps_subjects_together():
    facts = load_facts("landmark_city") + load_facts("landmark_country")
    train, held = split_by_subject(facts, 30, seed=0)
    assert len(train) + len(held) == len(facts) and 30 <= len(held) <= 32
    assert not {f.subject for f in train} & {f.subject for f in held}


def test_in_distribution_rows(tiny_tokenizer):
    fict = fictional_facts(["capital"], 6, seed=9)
    held = load_facts("capital")[:10]
    rows = in_distribution_rows(fict, held, get_format("raw"), tiny_tokenizer, n=8, seed=0)
    assert class_counts(rows) == {"C": 4, "C+S": 4, "S": 0}


def test_conflict_items():
    pool = load_facts("capital") + load_facts("author")
    facts = [f for f in pool if f.obj_aliases][:6] + load_facts("author")[:6]
    items = conflict_items(facts, pool, seed=0)
    assert len({ex.id for ex in items}) == len(items) == 12
    for f, ex in zip(facts, items, strict=True):
        assert ex.question == question_for(f) and ex.param_answer == f.obj
        assert ex.param_aliases == f.obj_aliases
        assert normalize_answer(ex.cf_answer) not in {normalize_answer(t) for t in f.obj_targets()}
        assert ex.cf_answer in ex.context and f.obj in ex.context  # passages mention the memorised answer
        assert ex.meta["fact"] == fact_key(f) and 0 <= ex.meta["template"] < len(PASSAGES)
    for t in PASSAGES:  # 2-3 sentences each
        text = t.format(cf_stmt="A is B.", param_stmt="A is C.", cf="B", param="C")
        assert 2 <= text.count(". ") + 1 <= 3, text
    one = conflict_items(facts[:2], pool, seed=0, style="sentence")
    assert one[0].param_answer not in one[0].context
    with pytest.raises(ValueError, match="no other object"):
        counterfactual(facts[0], [facts[0]], __import__("random").Random(0))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_shipped_preset_loads(name):
    p = get_preset(name)
    assert p.name == name and set(p.runs) <= set(RUNS)
    assert preset_from_dict(p.to_dict()) == p


def test_preset_fields_have_help_and_errors_are_clear():
    assert all(f.metadata.get("help") for f in dataclasses.fields(LabPreset))
    with pytest.raises(ConfigError, match="did you mean 'max_steps'"):
        get_preset("short", max_step=3)
    with pytest.raises(ConfigError, match="unknown lab preset 'shrot'; did you mean 'short'"):
        get_preset("shrot")
    with pytest.raises(ConfigError, match="fractions"):
        get_preset("short", fractions=[0.5, 0.5, 0.5])
    with pytest.raises(ConfigError, match="unknown run"):
        get_preset("short", runs=["baseline", "dropout"])
    long = get_preset("long")
    assert long.model == "gemma3-270m" and long.seeds == [0, 1, 2] and long.lr_scheduler != "constant"


def test_probe_on_a_tiny_model(tiny_llama):
    from ctxrely.data.suites import load_suite
    from ctxrely.lab.closed_book import lab_format, probe_examples, probe_facts
    from ctxrely.lab.heldout import known_suite_items

    model, tok = tiny_llama
    facts = load_facts("capital")[:5]
    recs = probe_facts(model, tok, facts, max_new_tokens=4, progress=False)
    assert [r["key"] for r in recs] == [fact_key(f) for f in facts]
    for r, f in zip(recs, facts, strict=True):  # "known" is exactly the documented rule on the real output
        assert isinstance(r["output"], str)
        assert r["known"] is answers_with(r["output"], f.obj_targets(), [f.subject, *f.subject_aliases])
    logit = probe_facts(model, tok, facts, method="logits", progress=False)
    assert all(r["output"] is None and r["known"] in (True, False) for r in logit)
    items = load_suite("cf_capitals").examples[:3]
    assert len(probe_examples(model, tok, items, max_new_tokens=4, progress=False)) == 3
    kept = known_suite_items(model, tok, ["cf_capitals"], limit=3, progress=False)
    assert set(kept) <= {"cf_capitals"} and all(len(v) <= 3 for v in kept.values())
    assert lab_format(tok).name == "chat"
    with pytest.raises(ValueError, match="unknown probe method"):
        probe_facts(model, tok, facts, method="guess", progress=False)
