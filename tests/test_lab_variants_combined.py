"""The realistic lab variants: filter by score-data's class, filter + augment, filter + QK-only, augment + QK-only."""

from __future__ import annotations

import json

from ctxrely.lab.presets import get_preset


def test_combined_variants(tiny_llama, tmp_path):
    from ctxrely.data.facts import load_facts
    from ctxrely.lab.mixture import build_mixture
    from ctxrely.lab.variants import make_variant
    from ctxrely.prompts import get_format

    model, tok = tiny_llama
    rows = build_mixture(load_facts("capital")[:20], get_format("raw"), tok, n_rows=16, seed=0)
    preset = get_preset("quick")

    def variant(run):
        return make_variant(run, rows, preset, model, tok, tmp_path, fmt="raw", progress=False)

    quantile = variant("filter")
    scores = json.loads((tmp_path / "criticality.json").read_text())  # cached by the first filter run
    # a random model is unsure of everything: rescore the cache so score-data's classes vary
    for i, s in enumerate(scores):
        s["cls"] = "C+S" if s["has_context"] and i % 3 == 0 else ("C" if s["has_context"] else "S")
    (tmp_path / "criticality.json").write_text(json.dumps(scores))
    by_class = variant("filter_class")
    want = [r for r, s in zip(rows, scores, strict=True) if s["cls"] != "C+S"]
    assert by_class.rows == want and by_class.manifest["filter_by"] == "class"
    assert by_class.manifest["n_dropped"] == len(rows) - len(want) > 0
    # the combinations start from the quantile filter's kept rows
    quantile = variant("filter")
    fa = variant("filter_augment")
    assert fa.rows[:len(quantile.rows)] == quantile.rows and fa.manifest["added"] > 0
    assert len(fa.rows) == len(quantile.rows) + fa.manifest["added"]
    assert all(r["cls"].endswith("-aug") for r in fa.rows[len(quantile.rows):])
    assert fa.manifest["n_dropped"] == quantile.manifest["n_dropped"] and not fa.overrides
    fq = variant("filter_qk")
    assert fq.rows == quantile.rows and fq.overrides == {"train_modules": "qk"}
    aug, aq = variant("augment"), variant("augment_qk")
    assert aq.rows == aug.rows and aq.manifest == aug.manifest and aq.overrides == {"train_modules": "qk"}
    assert not aug.overrides and aug.manifest["added"] > 0


def test_combined_variants_run_in_the_lab(tmp_path):
    import yaml

    from ctxrely.lab.runner import run_lab

    outcome = run_lab(get_preset("quick", runs=["filter_class", "filter_qk"], max_steps=2, eval_every=2),
                      tmp_path, progress=False, report=False)
    assert set(outcome.run_dirs) == {("filter_class", 0), ("filter_qk", 0)}
    cfg = yaml.safe_load((outcome.run_dirs[("filter_qk", 0)] / "ctxrely_config.yaml").read_text())
    assert cfg["train_modules"] == "qk"
    done = json.loads((outcome.run_dirs[("filter_class", 0)] / "lab_done.json").read_text())
    assert done["filter_by"] == "class"
    assert "sha" in done["provenance"]["git"]  # lab-table reads the commit that ran it from here
