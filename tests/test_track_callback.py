"""ContextRelianceCallback inside a real TRL SFTTrainer run on a tiny Llama."""

from __future__ import annotations

import copy
import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

from ctxrely.data.schema import ConflictExample  # noqa: E402

CAPS = [("France", "Paris", "Lyon"), ("Germany", "Berlin", "Munich"), ("Italy", "Rome", "Milan"),
        ("Spain", "Madrid", "Seville"), ("Japan", "Tokyo", "Osaka"), ("Egypt", "Cairo", "Giza"),
        ("Peru", "Lima", "Cusco"), ("Chile", "Santiago", "Valparaiso")]


def toy_examples(suite: str = "toy") -> list[ConflictExample]:
    return [ConflictExample(id=f"{suite}-{i}", suite=suite, context=f"The capital of {c} is {cf}.",
                            question=f"What is the capital of {c}?", cf_answer=cf, param_answer=p)
            for i, (c, p, cf) in enumerate(CAPS)]


def toy_rows() -> list[dict[str, str]]:
    return [{"prompt": f"Question: What is the capital of {c}?\nAnswer:", "completion": f" {p}"} for c, p, _ in CAPS]


@pytest.fixture
def fresh_llama(tiny_model_dir):
    """A tiny Llama of its own (safe to train)."""
    from ctxrely.models.load import load_model

    torch.set_num_threads(1)
    return load_model(str(tiny_model_dir("llama")))


def make_trainer(model, tok, out, *, steps=30, callbacks=(), grad_accum=1, batch=4, save_steps=None, **kw):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    args = SFTConfig(output_dir=str(out), max_steps=steps, per_device_train_batch_size=batch,
                     gradient_accumulation_steps=grad_accum, max_length=64, learning_rate=1e-3, logging_steps=5,
                     save_strategy="steps" if save_steps else "no", save_steps=save_steps or 500, report_to="none",
                     use_cpu=True, bf16=False, seed=0, disable_tqdm=True, **kw)
    return SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(toy_rows() * 4),
                      processing_class=tok, callbacks=list(callbacks))


def test_sft_run_writes_rows_every_n_steps_and_logs_them(fresh_llama, tmp_path):
    from transformers import TrainerCallback

    from ctxrely.engine.api import evaluate
    from ctxrely.track.callback import ContextRelianceCallback

    model, tok = fresh_llama
    initial = copy.deepcopy(model)
    modes: list[bool] = []

    seen: list[int] = []

    class Spy(TrainerCallback):  # is the model back in train mode at every step after the probes?
        def on_step_begin(self, args, state, control, model=None, **kw):
            modes.append(model.training)

        def on_log(self, args, state, control, logs=None, **kw):  # what a report_to tracker receives
            if "ctxrely/toy/logit_cf_rate" in logs:
                seen.append(state.global_step)

    trainer = make_trainer(model, tok, tmp_path, steps=30, callbacks=[Spy()], grad_accum=2, batch=2)
    cb = ContextRelianceCallback(examples={"toy": toy_examples()}, id_sets=toy_rows(), eval_every=5,
                                 attention_subset=4).attach(trainer)
    model.train()  # so that the step-0 probe, too, has a train mode to restore
    trainer.train()

    rows = [json.loads(line) for line in (tmp_path / "trajectory.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 5, 10, 15, 20, 25, 30]  # optimizer steps (grad_accum=2)
    assert all(0 <= r["toy/logit_cf_rate"] <= 1 and 0 <= r["attn/context_mass"] <= 1 for r in rows)
    assert all(0 <= r["id/id/acc"] <= 1 and r["id/id/logp"] < 0 for r in rows)
    assert rows[-1]["id/id/logp"] > rows[0]["id/id/logp"]  # it learned the ID rows it trained on
    logged = {h["step"]: h for h in trainer.state.log_history if "ctxrely/toy/logit_cf_rate" in h}
    assert sorted(logged) == [0, 5, 10, 15, 20, 25, 30] and seen == [0, 5, 10, 15, 20, 25, 30]
    assert logged[10]["ctxrely/toy/m_c"] == pytest.approx(rows[2]["toy/m_c"])
    assert all(modes) and len(modes) == 30
    # the trainer's own loss log at the same steps survives our trainer.log calls
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [5, 10, 15, 20, 25, 30]
    # step 0 is exactly what `ctxrely eval` (the same core) says about the untrained model
    ref = evaluate(initial, tok, examples=toy_examples(), mode="logits", n_boot=0, progress=False).metrics
    assert rows[0]["toy/logit_cf_rate"] == pytest.approx(ref["toy/logit_cf_rate"])
    assert rows[0]["toy/m_c"] == pytest.approx(ref["toy/m_c"], rel=1e-5)
    # per-example side file and probe set, for the report's flips
    ex_rows = [json.loads(line) for line in (tmp_path / "trajectory_examples.jsonl").read_text().splitlines()]
    assert [e["step"] for e in ex_rows] == [0, 5, 10, 15, 20, 25, 30]
    assert {r["id"] for r in ex_rows[0]["rows"]} == {e.id for e in toy_examples()}
    assert all(isinstance(r["cf_wins"], bool) for r in ex_rows[-1]["rows"])
    assert len((tmp_path / "probe_set.jsonl").read_text().splitlines()) == len(CAPS)
    assert json.loads((tmp_path / "tracking.json").read_text())["metric"] == "toy/logit_cf_rate"
    assert cb.n_errors == 0


def test_callbacks_list_finds_its_trainer_and_nonstrict_errors_keep_training(fresh_llama, tmp_path, monkeypatch):
    import ctxrely.track.callback as cbmod

    model, tok = fresh_llama
    real = cbmod.run_probe
    calls = {"n": 0}

    def flaky(model, tokenizer, probe):
        calls["n"] += 1
        if calls["n"] == 2:  # the evaluation at step 5 breaks
            raise RuntimeError("injected failure")
        return real(model, tokenizer, probe)

    monkeypatch.setattr(cbmod, "run_probe", flaky)
    cb = cbmod.ContextRelianceCallback(examples={"toy": toy_examples()}, eval_every=5, attention_subset=0)
    trainer = make_trainer(model, tok, tmp_path, steps=10, callbacks=[cb])  # not attached: found on the stack
    trainer.train()
    assert cb.trainer is trainer
    assert trainer.state.global_step == 10 and cb.n_errors == 1
    steps = [json.loads(line)["step"] for line in (tmp_path / "trajectory.jsonl").read_text().splitlines()]
    assert steps == [0, 10]
    assert [h["step"] for h in trainer.state.log_history if "ctxrely/toy/m_c" in h] == [0, 10]
    assert model.training  # restored even though the probe raised


def test_strict_reraises(fresh_llama, tmp_path, monkeypatch):
    import ctxrely.track.callback as cbmod

    model, tok = fresh_llama

    def broken(*a, **k):
        raise RuntimeError("injected failure")

    monkeypatch.setattr(cbmod, "run_probe", broken)
    trainer = make_trainer(model, tok, tmp_path, steps=5)
    cbmod.ContextRelianceCallback(examples={"toy": toy_examples()}, eval_every=5, strict=True).attach(trainer)
    with pytest.raises(RuntimeError, match="injected failure"):
        trainer.train()


def test_inversion_stops_training_and_keeps_the_peak(fresh_llama, tmp_path, monkeypatch):
    """A scripted metric sequence drives the detector inside a real training loop."""
    import ctxrely.track.callback as cbmod
    from ctxrely.track.probe import ProbeResult

    model, tok = fresh_llama
    script = iter([0.5, 0.7, 0.9, 0.75, 0.6, 0.5, 0.4, 0.3])  # steps 0, 2, 4, 6, 8, ...

    monkeypatch.setattr(cbmod, "run_probe", lambda *a, **k: ProbeResult({"toy/logit_cf_rate": next(script)}, []))
    trainer = make_trainer(model, tok, tmp_path, steps=30)
    cb = cbmod.ContextRelianceCallback(examples={"toy": toy_examples()}, eval_every=2, drop_threshold=10,
                                       patience=2, on_inversion=["stop", "keep_peak"]).attach(trainer)
    trainer.train()
    assert trainer.state.global_step == 8  # 0.75 (-15 pts) at step 6, 0.6 at step 8: confirmed, stopped
    event = json.loads((tmp_path / "inversion.json").read_text())
    assert (event["peak_step"], event["first_step"], event["step"]) == (4, 6, 8)
    peak = tmp_path / "peak-checkpoint"
    assert json.loads((peak / "ctxrely_peak.json").read_text())["step"] == 4
    assert (peak / "model.safetensors").exists() and not (peak / "pytorch_model.bin").exists()
    rows = [json.loads(line) for line in (tmp_path / "trajectory.jsonl").read_text().splitlines()]
    assert rows[-1]["inversion_event"]["step"] == 8 and rows[-1]["inversion/inverted"] == 1.0
    assert cb.detector.inverted


@pytest.mark.parametrize("kw, msg", [
    (dict(eval_every=0), "eval_every"),
    (dict(on_inversion="explode"), "on_inversion"),
    (dict(metric="toy/cf_acc"), "not produced"),  # generate metric in logits mode
    (dict(mode="beam"), "mode"),
    (dict(id_sets=[{"prompt": "q"}]), "completion"),
    (dict(attention_subset=-1), "attention_subset"),
])
def test_constructor_fails_fast(kw, msg):
    from ctxrely.track.callback import ContextRelianceCallback

    with pytest.raises((ValueError, TypeError), match=msg):
        ContextRelianceCallback(examples={"toy": toy_examples()}, **kw)


def test_nothing_to_probe_and_default_metrics():
    from ctxrely.track.callback import ContextRelianceCallback

    with pytest.raises(ValueError, match="nothing to probe"):
        ContextRelianceCallback()
    two = ContextRelianceCallback(examples={"a": toy_examples("a"), "b": toy_examples("b")})
    assert two.metric == "all/logit_cf_rate"
    gen = ContextRelianceCallback(examples={"a": toy_examples("a")}, mode="generate")
    assert gen.metric == "a/cf_acc"
    builtin = ContextRelianceCallback(suites=["cf_capitals"], limit=4)
    assert builtin.metric == "cf_capitals/logit_cf_rate" and len(builtin.probe.examples) == 4


def test_attention_mass_is_the_context_share_under_uniform_attention(fresh_llama):
    """Zero Q/K weights make attention uniform, so the mass on the context is n_context / n_tokens."""
    from ctxrely.prompts import get_format
    from ctxrely.track.attention import context_attention, context_token_mask

    model, tok = fresh_llama
    for layer in model.model.layers:
        torch.nn.init.zeros_(layer.self_attn.q_proj.weight)
        torch.nn.init.zeros_(layer.self_attn.k_proj.weight)
    exs = toy_examples()[:5]
    got = context_attention(model, tok, exs, fmt="raw", batch_size=3)  # left padding inside batches
    for ex, mass in zip(exs, got, strict=True):
        ids, mask = context_token_mask(tok, get_format("raw").render(ex.context, ex.question), ex.context, True)
        assert 0 < sum(mask) < len(ids)
        assert mass == pytest.approx(sum(mask) / len(ids), abs=1e-5)
    assert model.config._attn_implementation == "sdpa"  # switched back after the eager pass


def test_plain_transformers_trainer(fresh_llama, tmp_path):
    """The same callback on a plain ``transformers.Trainer`` (pre-tokenised causal-LM rows)."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from ctxrely.track.callback import add_context_tracking

    model, tok = fresh_llama
    texts = [r["prompt"] + r["completion"] for r in toy_rows()] * 2
    ds = Dataset.from_list([{"input_ids": tok(t)["input_ids"]} for t in texts])
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=4, per_device_train_batch_size=4, learning_rate=1e-3,
                             logging_steps=2, save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    cb = add_context_tracking(trainer, examples={"toy": toy_examples()}, eval_every=2, attention_subset=0)
    trainer.train()
    assert cb.trainer is trainer and cb.tokenizer is tok
    assert [json.loads(line)["step"] for line in (tmp_path / "trajectory.jsonl").read_text().splitlines()] == [0, 2, 4]
    assert [h["step"] for h in trainer.state.log_history if "ctxrely/toy/logit_cf_rate" in h] == [0, 2, 4]
    assert [h["step"] for h in trainer.state.log_history if "loss" in h] == [2, 4]


def test_plain_trainer_without_a_tokenizer_loads_the_models_own(fresh_llama, tmp_path, caplog):
    """Issue 8, defect 10: no processing_class -> the tokenizer saved beside the model; else one clear error."""
    from datasets import Dataset
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from ctxrely.errors import ConfigError
    from ctxrely.track.callback import ContextRelianceCallback

    model, tok = fresh_llama
    ds = Dataset.from_list([{"input_ids": tok(r["prompt"] + r["completion"])["input_ids"]} for r in toy_rows()])
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4,
                             save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True)
    cb = ContextRelianceCallback(examples={"toy": toy_examples()}, eval_every=1, attention_subset=0)
    trainer = Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb],
                      data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    with caplog.at_level("INFO", logger="ctxrely.models.load"):
        trainer.train()
    assert cb.tokenizer is not None and cb.tokenizer.get_vocab() == tok.get_vocab()
    assert "loaded the one saved with the model" in caplog.text
    model.config._name_or_path = model.name_or_path = ""
    cb2 = ContextRelianceCallback(examples={"toy": toy_examples()}, eval_every=1, attention_subset=0,
                                  output_dir=tmp_path / "b")
    trainer2 = Trainer(model=model, args=args, train_dataset=ds, callbacks=[cb2],
                       data_collator=DataCollatorForLanguageModeling(tok, mlm=False))
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        trainer2.train()
