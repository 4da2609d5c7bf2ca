"""run_train (TRL SFTTrainer + the callback) on a tiny Llama: data formats, full/LoRA, resume, compact LM head."""

from __future__ import annotations

import importlib.util
import json

import pytest

from ctxrely.data.schema import ConflictExample, DataError
from ctxrely.train.data import to_id_rows, to_sft_rows

CAPS = [("France", "Paris", "Lyon"), ("Germany", "Berlin", "Munich"), ("Italy", "Rome", "Milan"),
        ("Spain", "Madrid", "Seville"), ("Japan", "Tokyo", "Osaka"), ("Egypt", "Cairo", "Giza")]


def alpaca_rows():
    return [{"instruction": f"What is the capital of {c}?", "input": "", "output": p} for c, p, _ in CAPS] * 4


def toy_examples():
    return {"toy": [ConflictExample(id=str(i), suite="toy", context=f"The capital of {c} is {cf}.",
                                    question=f"What is the capital of {c}?", cf_answer=cf, param_answer=p)
                    for i, (c, p, cf) in enumerate(CAPS)]}


# ----------------------------------------------------------------------------- data formats (no torch)

def test_formats_become_prompt_completion_rows():
    a = to_sft_rows([{"instruction": "Capital of France?", "input": "France is in Europe.", "output": "Paris"}],
                    prompt_format="raw")
    assert a == [{"prompt": "France is in Europe.\nQuestion: Capital of France?\nAnswer:", "completion": " Paris"}]
    m = to_sft_rows([{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "Hello"}]}])
    assert m[0]["prompt"][-1] == {"role": "user", "content": "Hi"} and m[0]["completion"][0]["content"] == "Hello"
    pc = to_sft_rows([{"prompt": "2+2=", "completion": "4"}])
    assert pc == [{"prompt": "2+2=", "completion": "4"}]


@pytest.mark.parametrize("rows, match", [
    ([{"instruction": "a?", "output": "b"}, {"instruction": "c?"}], r"line 2, field 'output'"),
    ([{"messages": [{"role": "user", "content": "hi"}]}], r"line 1, field 'messages\[0\]': the last message"),
    ([{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}], r"message 0 needs"),
    ([{"text": "free text"}], r"cannot tell the format"),
    ([{"prompt": "a", "completion": "b"}, {"prompt": [{"role": "user", "content": "a"}],
                                           "completion": [{"role": "assistant", "content": "b"}]}], "mix chat"),
])
def test_bad_rows_name_line_and_field(rows, match):
    with pytest.raises(DataError, match=match):
        to_sft_rows(rows, path="train.jsonl")


def test_chat_rows_become_templated_id_probes(tiny_tokenizer):
    rows = to_sft_rows([{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}]}])
    (probe,) = to_id_rows(rows, tiny_tokenizer)
    assert probe == {"prompt": "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "completion": "Yo"}


# ----------------------------------------------------------------------------- training runs

torch = pytest.importorskip("torch")
pytest.importorskip("trl")


@pytest.fixture
def fresh_llama(tiny_model_dir):
    from ctxrely.models.load import load_model

    torch.set_num_threads(1)
    return load_model(str(tiny_model_dir("llama")))


def cfg_for(out, *extra):
    from ctxrely.train.config import load_config

    return load_config(None, ["model=tiny", f"output_dir={out}", "batch_size=4", "max_length=64", "lr=1e-3",
                              "eval_every=5", "suites=", "prompt_format=raw", "logging_steps=5", "device=cpu",
                              "attention_subset=4", *extra])


def steps_of(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def test_run_train_full(fresh_llama, tmp_path):
    from ctxrely.train.sft import run_train

    model, tok = fresh_llama
    out = run_train(cfg_for(tmp_path / "full", "max_steps=12", "id_holdout=4"), model=model, tokenizer=tok,
                    train_rows=alpaca_rows(), eval_examples=toy_examples(), id_rows=alpaca_rows()[:4])
    assert steps_of(out / "trajectory.jsonl") == [0, 5, 10, 12]  # and the last step
    row = json.loads((out / "trajectory.jsonl").read_text().splitlines()[-1])
    assert {"toy/logit_cf_rate", "id/heldout/acc", "id/id/acc", "attn/context_mass"} <= set(row)
    assert (out / "ctxrely_config.yaml").exists() and (out / "final" / "model.safetensors").exists()
    assert json.loads((out / "tracking.json").read_text())["format"] == "raw"  # auto: the training format


def test_run_train_lora_trains_only_adapters(fresh_llama, tmp_path):
    from ctxrely.train.sft import run_train

    model, tok = fresh_llama
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    out = run_train(cfg_for(tmp_path / "lora", "max_steps=6", "finetune=lora", "lora.rank=4",
                            "lora.target_modules=q_proj,v_proj"),
                    model=model, tokenizer=tok, train_rows=alpaca_rows(), eval_examples=toy_examples())
    assert steps_of(out / "trajectory.jsonl") == [0, 5, 6]
    assert (out / "final" / "adapter_model.safetensors").exists()
    rows = [json.loads(line) for line in (out / "trajectory.jsonl").read_text().splitlines()]
    assert rows[0]["toy/logp_margin"] != pytest.approx(rows[-1]["toy/logp_margin"])  # the probe sees the adapter
    base = {n.replace("base_model.model.", "").replace(".base_layer", ""): p
            for n, p in model.named_parameters() if "lora_" not in n}
    assert all(torch.equal(before[n], base[n]) for n in before)


def test_resume_from_checkpoint_has_no_lost_or_duplicated_rows(fresh_llama, tmp_path, tiny_model_dir):
    from ctxrely.models.load import load_model
    from ctxrely.train.sft import run_train

    out = tmp_path / "run"
    model, tok = fresh_llama
    run_train(cfg_for(out, "max_steps=10", "save_steps=5", "save_total_limit=null"), model=model, tokenizer=tok,
              train_rows=alpaca_rows(), eval_examples=toy_examples())
    assert steps_of(out / "trajectory.jsonl") == [0, 5, 10]
    first_10 = json.loads((out / "trajectory.jsonl").read_text().splitlines()[-1])
    # resume from the earlier checkpoint: steps 6..10 run again; the old step-10 row is moved aside
    model, tok = load_model(str(tiny_model_dir("llama")))
    run_train(cfg_for(out, "max_steps=10", "save_steps=5", "save_total_limit=null", f"resume={out}/checkpoint-5"),
              model=model, tokenizer=tok, train_rows=alpaca_rows(), eval_examples=toy_examples())
    assert steps_of(out / "trajectory.jsonl") == [0, 5, 10]
    assert steps_of(out / "trajectory_examples.jsonl") == [0, 5, 10]
    assert steps_of(out / "trajectory.superseded.jsonl") == [10]
    superseded = json.loads((out / "trajectory.superseded.jsonl").read_text())
    assert superseded["toy/m_c"] == first_10["toy/m_c"]
    # resume from the last checkpoint and go further
    model, tok = load_model(str(tiny_model_dir("llama")))
    run_train(cfg_for(out, "max_steps=15", "save_steps=5", "resume=last"), model=model, tokenizer=tok,
              train_rows=alpaca_rows(), eval_examples=toy_examples())
    assert steps_of(out / "trajectory.jsonl") == [0, 5, 10, 15]


def test_compact_lm_head_gives_the_same_loss_and_gradients(fresh_llama, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig

    from ctxrely.train.sft import _trainer_class

    model, tok = fresh_llama
    rows = [{"prompt": "A long shared context about capitals. " * 3 + f"Question {i}?\nAnswer:",
             "completion": f" {c}"} for i, (_, c, _) in enumerate(CAPS)]
    args = SFTConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=6, max_length=128,
                     report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, save_strategy="no")
    trainer = _trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    assert (batch["labels"] != -100).sum() < batch["labels"].numel() / 3  # mostly prompt
    results = []
    for compact in (False, True):
        trainer.compact = compact
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, dict(batch))
        loss.backward()
        grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
        results.append((loss.detach(), grads))
    assert torch.allclose(results[0][0], results[1][0], atol=1e-6)
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6)
    import trl.trainer.utils as tu

    assert tu._use_triton(torch.device("cpu")) is False  # the switch is scoped to compute_loss


def test_compact_lm_head_still_projects_only_labelled_positions(fresh_llama, tmp_path, monkeypatch):
    """The speed-up flips TRL's private ``_use_triton`` (TRL has no public option for it): this fails when
    the flag stops having an effect, e.g. after a TRL upgrade moves the compaction."""
    import trl.trainer.utils as tu
    from datasets import Dataset
    from trl import SFTConfig

    from ctxrely.train.sft import _trainer_class

    model, tok = fresh_llama
    rows = [{"prompt": "Some context. " * 4 + f"Q{i}?", "completion": " yes"} for i in range(4)]
    args = SFTConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, max_length=64,
                     report_to="none", use_cpu=True, bf16=False, disable_tqdm=True, save_strategy="no")
    trainer = _trainer_class()(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    seen: list[int] = []
    original = tu._ChunkedLogProbFunction.apply
    monkeypatch.setattr(tu._ChunkedLogProbFunction, "apply", lambda h, *a: seen.append(h.shape[0]) or original(h, *a))
    for compact in (False, True):
        trainer.compact = compact
        trainer.compute_loss(trainer.model, dict(batch))
    n_labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert seen == [batch["labels"][:, 1:].numel(), n_labelled], "TRL's _use_triton no longer controls compaction"


def test_qk_only(fresh_llama, tmp_path, tiny_model_dir):
    from ctxrely.errors import ConfigError
    from ctxrely.models.load import load_model
    from ctxrely.train.sft import run_train

    model, tok = fresh_llama
    cfg = cfg_for(tmp_path / "qk", "max_steps=2", "train_modules=qk", "attention_subset=0")
    if importlib.util.find_spec("ctxrely.mitigate.qk_only") is None:
        with pytest.raises(ConfigError, match="qk_only"):
            run_train(cfg, model=model, tokenizer=tok, train_rows=alpaca_rows(), eval_examples=toy_examples())
        return
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    run_train(cfg, model=model, tokenizer=tok, train_rows=alpaca_rows(), eval_examples=toy_examples())
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p)}
    assert changed and all(("q_proj" in n or "k_proj" in n) for n in changed)
    # LoRA on Q/K only (the lora.target_modules setting is replaced)
    model, tok = load_model(str(tiny_model_dir("llama")))
    out = run_train(cfg_for(tmp_path / "qk-lora", "max_steps=2", "train_modules=qk", "finetune=lora",
                            "lora.rank=4", "attention_subset=0"),
                    model=model, tokenizer=tok, train_rows=alpaca_rows(), eval_examples=toy_examples())
    adapter = json.loads((out / "final" / "adapter_config.json").read_text())
    assert sorted(adapter["target_modules"]) == ["k_proj", "q_proj"] and adapter["r"] == 4


def test_dataset_file_errors_before_training(fresh_llama, tmp_path):
    from ctxrely.train.sft import run_train

    data = tmp_path / "train.jsonl"
    data.write_text('{"instruction": "a?", "input": "", "output": "b"}\n{"instruction": "c?", "input": ""}\n')
    model, tok = fresh_llama
    with pytest.raises(DataError, match=r"train.jsonl, line 2, field 'output'"):
        run_train(cfg_for(tmp_path / "bad", "max_steps=2", f"dataset={data}"), model=model, tokenizer=tok,
                  eval_examples=toy_examples())
    assert not (tmp_path / "bad" / "trajectory.jsonl").exists()


def test_a_second_training_into_a_busy_folder_is_refused(fresh_llama, tmp_path):
    """One training per run folder: a live lock refuses the second run with one line, writing nothing;
    a finished run leaves no lock behind."""
    import subprocess
    import sys

    from ctxrely.engine.resume import LOCK, ResumeError
    from ctxrely.train.sft import run_train

    model, tok = fresh_llama
    out = tmp_path / "busy"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(str(other.pid))
        with pytest.raises(ResumeError, match=rf"in use by another ctxrely run \(pid {other.pid}\)"):
            run_train(cfg_for(out, "max_steps=2"), model=model, tokenizer=tok, train_rows=alpaca_rows(),
                      eval_examples=toy_examples())
        assert sorted(p.name for p in out.iterdir()) == [LOCK]  # nothing written
    finally:
        other.kill()
        other.wait()
    done = run_train(cfg_for(out, "max_steps=2"), model=model, tokenizer=tok, train_rows=alpaca_rows(),
                     eval_examples=toy_examples())  # the dead process's lock is taken over
    assert (done / "trajectory.jsonl").is_file() and not (done / LOCK).exists()
