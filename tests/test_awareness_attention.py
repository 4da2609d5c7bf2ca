"""Attention allocation: role bucketing against hand-rendered templates, shares, eager scoping, the command."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from ctxrely.awareness.allocation import attention_allocation, role_masses
from ctxrely.awareness.roles import ROLES, RoleEncoding, encode_roles
from ctxrely.cli.main import main

USER = "Paris is the capital of France.\nQuestion: What is the capital of France?"
ANSWER = "The capital is Paris"


def _text_of(tok, enc: RoleEncoding, role: str) -> str:
    return tok.decode([i for i, r in zip(enc.ids, enc.roles, strict=True) if r == role])


def test_roles_chatml_against_hand_rendering(tiny_tokenizer):
    enc = encode_roles(tiny_tokenizer, USER, ANSWER, "chat")
    hand = f"<|im_start|>user\n{USER}<|im_end|>\n<|im_start|>assistant\n{ANSWER}"
    assert tiny_tokenizer.decode(enc.ids) == hand  # cut right after the answer
    assert _text_of(tiny_tokenizer, enc, "user") == USER
    assert _text_of(tiny_tokenizer, enc, "assistant").strip() == ANSWER
    assert _text_of(tiny_tokenizer, enc, "bos") == "<|im_start|>"  # the first token
    assert _text_of(tiny_tokenizer, enc, "template") == "user\n<|im_end|>\n<|im_start|>assistant\n"
    first_answer = enc.roles.index("assistant")
    assert enc.queries[0] == first_answer - 1 and enc.queries[-1] == len(enc.ids) - 2


def test_roles_with_system_prompt_and_default_system(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    # SmolLM2-style: the template inserts its own system turn when none is given
    tok.chat_template = ("{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
                         "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n"
                         "{{ m['content'] }}<|im_end|>\n{% endfor %}")
    enc = encode_roles(tok, USER, ANSWER, "chat")
    assert "helpful assistant" in _text_of(tok, enc, "template")  # inserted text is template, not bos
    assert _text_of(tok, enc, "user") == USER


def test_roles_raw(tiny_tokenizer):
    enc = encode_roles(tiny_tokenizer, USER, ANSWER, "raw")
    assert tiny_tokenizer.decode(enc.ids) == f"{USER} {ANSWER}"
    assert enc.roles[0] == "bos" and "template" not in enc.roles[: enc.roles.index("assistant") - 1]
    assert _text_of(tiny_tokenizer, enc, "assistant").strip() == ANSWER
    assert tiny_tokenizer.decode([enc.ids[0]]) + _text_of(tiny_tokenizer, enc, "user") == USER


@pytest.mark.parametrize("arch", ["llama", "gpt_neox", "gpt2", "qwen2"])
def test_shares_sum_to_one_and_sdpa_restored(tiny_model_dir, arch):
    from ctxrely.models.load import load_model

    model, tok = load_model(str(tiny_model_dir(arch)))
    model.set_attn_implementation("sdpa")
    s = attention_allocation(model, tok, [USER, "Berlin is big.\nQuestion: Is Berlin big?"], max_new_tokens=4)
    assert model.config._attn_implementation == "sdpa"
    n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
    for t in ("raw", "chat"):
        v = s["templates"][t]
        assert set(v["roles"]) == set(ROLES) and sum(v["roles"].values()) == pytest.approx(1, abs=1e-4)
        assert sum(v["roles_no_template"].values()) == pytest.approx(1, abs=1e-4)
        assert v["roles_no_template"]["template"] == 0.0
        assert len(v["per_head"]) == n_layers and len(v["per_head"][0]) == n_heads
        for layer in v["per_head"]:
            for head in layer:
                assert sum(head.values()) == pytest.approx(1, abs=1e-4)
    assert s["templates"]["chat"]["roles"]["template"] > 0 and s["templates"]["raw"]["roles"]["template"] < 0.2
    rh_raw, rh_chat = s["templates"]["raw"]["retrieval_head"], s["templates"]["chat"]["retrieval_head"]
    assert (rh_raw["layer"], rh_raw["head"]) == (rh_chat["layer"], rh_chat["head"])  # raw's head reused
    users = np.array([[h["user"] for h in layer] for layer in s["templates"]["raw"]["per_head"]])
    assert users[rh_raw["layer"], rh_raw["head"]] == pytest.approx(users.max())


def test_hooks_removed_and_attention_restored_after_error(tiny_model_dir):
    from ctxrely.diagnose.attention_score import attention_modules
    from ctxrely.models.load import load_model

    model, tok = load_model(str(tiny_model_dir("llama")))
    model.set_attn_implementation("sdpa")
    enc = encode_roles(tok, USER, ANSWER, "chat")
    bad = RoleEncoding(enc.ids, enc.roles, [len(enc.ids) + 5])  # a query position past the end
    with pytest.raises(IndexError):
        role_masses(model, [bad])
    assert model.config._attn_implementation == "sdpa"
    assert all(not m._forward_hooks for m in attention_modules(model))


def test_attention_command_nih_and_data(tiny_model_dir, shared_data, tmp_path):
    model = str(tiny_model_dir("qwen2"))
    out = tmp_path / "a"
    assert main(["attention", "--model", model, "--nih", "--lengths", "300", "--depths", "0,100",
                 "--haystack", str(shared_data / "nih_haystack_essays"), "--max-new-tokens", "3",
                 "--out", str(out), "--no-progress"]) == 0
    s = json.loads((out / "summary.json").read_text())
    assert set(s["templates"]) == {"raw", "chat"} and s["n_examples"] == 2
    for name in ("attention_roles.png", "attention_roles.svg", "report.html"):
        assert (out / name).stat().st_size > 0
    out2 = tmp_path / "b"
    assert main(["attention", "--model", model, "--data", str(shared_data / "squad" / "squad_dev_v1.1_part1.json"),
                 "--limit", "2", "--template", "chat", "--max-new-tokens", "3", "--out", str(out2),
                 "--no-progress"]) == 0
    s2 = json.loads((out2 / "summary.json").read_text())
    assert list(s2["templates"]) == ["chat"] and "retrieval_head" not in s2["templates"]["chat"]


def test_attention_bad_input(tiny_model_dir, tmp_path, capsys):
    model = str(tiny_model_dir("llama"))
    assert main(["attention", "--model", model, "--nih", "--template", "alpaca", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown template 'alpaca'" in err and "\n" not in err
    assert main(["attention", "--model", model, "--data", str(tmp_path / "missing.json"), "--out", str(tmp_path)]) == 2
    assert "missing.json" in capsys.readouterr().err


@pytest.mark.parametrize("template", ["chat", "raw"])
def test_empty_answer_measures_the_last_prompt_token(tiny_tokenizer, template):
    enc = encode_roles(tiny_tokenizer, USER, "  ", template)
    assert "assistant" not in enc.roles and enc.queries == [len(enc.ids) - 1]
    assert _text_of(tiny_tokenizer, enc, "user").endswith("capital of France?")
    if template == "chat":
        assert tiny_tokenizer.decode(enc.ids).endswith("<|im_start|>assistant\n")


def test_interrupted_measurement_resumes_where_it_stopped(tiny_llama, tmp_path):
    """``out_dir``: answers and per-prompt masses are kept as they come; a rerun measures only the rest
    and gives the uninterrupted result; the partial file goes at the end, and new settings start over."""
    from ctxrely.awareness.allocation import PARTIAL

    model, tok = tiny_llama
    users = [USER, "Berlin is big.\nQuestion: Is Berlin big?", "Rome is old.\nQuestion: Is Rome old?"]
    want = attention_allocation(model, tok, users, templates=("raw", "chat"), max_new_tokens=3)
    measured: list[int] = []

    def count(_mod, _args, kwargs):
        if kwargs.get("use_cache") is False:  # the measuring forward (generation uses the cache)
            measured.append(1)
            if crash and len(measured) == 4:
                raise KeyboardInterrupt

    crash = True
    h = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        with pytest.raises(KeyboardInterrupt):
            attention_allocation(model, tok, users, templates=("raw", "chat"), max_new_tokens=3, out_dir=tmp_path)
        assert (tmp_path / PARTIAL).is_file()
        crash, measured[:] = False, []
        got = attention_allocation(model, tok, users, templates=("raw", "chat"), max_new_tokens=3, out_dir=tmp_path)
    finally:
        h.remove()
    assert len(measured) == 2 * len(users) - 3  # 3 prompts were measured before the interruption
    assert got == want and not (tmp_path / PARTIAL).exists()
    (tmp_path / PARTIAL).write_text(json.dumps({"config_hash": "other"}) + "\n" + json.dumps(
        {"template": "raw", "answers": ["x", "y", "z"]}) + "\n")
    assert attention_allocation(model, tok, users, templates=("raw", "chat"), max_new_tokens=3,
                                out_dir=tmp_path) == want  # stale settings: ignored
