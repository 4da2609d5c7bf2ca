"""NIH recall and attention-role probes inside ContextRelianceCallback during a real SFTTrainer run."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")


def test_probes_join_every_trajectory_row(tiny_model_dir, shared_data, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from ctxrely.awareness.probes import AttentionRoleProbe, NIHProbe
    from ctxrely.models.load import load_model
    from ctxrely.track.callback import ContextRelianceCallback

    torch.set_num_threads(1)
    model, tok = load_model(str(tiny_model_dir("llama")))
    hay = str(shared_data / "nih_haystack_essays")
    cb = ContextRelianceCallback(["cf_capitals"], limit=4, eval_every=2, attention_subset=0, strict=True,
                                 probes=[NIHProbe(lengths=[300], depths=[0, 100], haystack=hay, max_new_tokens=4),
                                         AttentionRoleProbe(lengths=[300], haystack=hay, max_new_tokens=3)])
    rows = [{"prompt": "Question: What is the capital of France?\nAnswer:", "completion": " Paris"}] * 8
    args = SFTConfig(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, max_length=64,
                     report_to="none", use_cpu=True, save_strategy="no", disable_tqdm=True, learning_rate=1e-3)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    cb.attach(trainer)
    trainer.train()
    traj = [json.loads(line) for line in (tmp_path / "trajectory.jsonl").read_text().splitlines()]
    assert [r["step"] for r in traj] == [0, 2]
    for r in traj:
        assert 0.0 <= r["nih/recall"] <= 1.0 and r["nih/strict"] in (0.0, 1.0, 0.5)
        shares = [r[f"attn_roles/{k}"] for k in ("bos", "user", "template", "assistant")]
        assert sum(shares) == pytest.approx(1, abs=1e-4)
    assert any("ctxrely/nih/recall" in h for h in trainer.state.log_history)


def test_probe_arguments_fail_fast(tmp_path):
    from ctxrely.awareness.nih import NIHError
    from ctxrely.awareness.probes import NIHProbe
    from ctxrely.track.callback import ContextRelianceCallback

    with pytest.raises(NIHError, match="outside 0-100"):
        NIHProbe(depths=[150], haystack=str(tmp_path))
    with pytest.raises(TypeError, match="callables"):
        ContextRelianceCallback(["cf_capitals"], probes=["nih"])


def test_lab_preset_turns_awareness_probes_on(shared_data):
    from ctxrely.awareness.probes import AttentionRoleProbe, NIHProbe
    from ctxrely.lab.presets import get_preset
    from ctxrely.lab.runner import _awareness_probes

    assert _awareness_probes(get_preset("short"), None) == []
    preset = get_preset("short", awareness_lengths=["400", "800"])
    assert preset.awareness_lengths == [400, 800]
    nih, att = _awareness_probes(preset, "[IND]")
    assert isinstance(nih, NIHProbe) and nih.lengths == [400, 800] and nih.indicator == "[IND]"
    assert isinstance(att, AttentionRoleProbe) and att.template == "chat"
