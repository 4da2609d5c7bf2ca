"""TrainConfig: YAML + overrides, unknown keys and wrong types named with file, line and field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ctxrely.errors import ConfigError
from ctxrely.train.config import LoraSection, TrainConfig, field_help, load_config, save_config

ROOT = Path(__file__).resolve().parents[1]


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_every_shipped_config_loads():
    configs = sorted((ROOT / "examples").glob("*.yaml"))
    assert configs, "examples/run.yaml is missing"
    for path in configs:
        cfg = load_config(path)
        assert cfg.model and cfg.suites


def test_every_field_has_help():
    for cls in (TrainConfig, LoraSection):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help"
    names = [name for name, _, _ in field_help()]
    assert "lora.rank" in names and "eval_every" in names


def test_yaml_then_overrides(tmp_path):
    path = write(tmp_path, "model: ./m\nlr: 1e-4\nsuites: [cf_capitals]\nlora:\n  rank: 4\n")
    cfg = load_config(path, ["lora.rank=8", "finetune=lora", "suites=cf_capitals,cf_bio", "max_steps=30",
                             "eval_limit=null", "completion_only_loss=false"])
    assert cfg.lr == 1e-4  # YAML reads 1e-4 as a string; the float field takes it
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.finetune) == (8, 32, "lora")
    assert cfg.suites == ["cf_capitals", "cf_bio"] and cfg.max_steps == 30 and cfg.eval_limit is None
    assert cfg.completion_only_loss is False


@pytest.mark.parametrize("text, match", [
    ("model: m\nlearning_rate: 1e-4\n", r"run.yaml, line 2, field 'learning_rate': unknown key"),
    ("model: m\nlora:\n  rank: 8\n  alpah: 3\n", r"line 4, field 'lora.alpah': unknown key \(did you mean 'lora.alpha'"),
    ("model: m\nbatch_size: many\n", r"line 2, field 'batch_size': expected int"),
    ("model: m\nfinetune: qlora\n", r"line 2, field 'finetune': 'qlora' is not one of"),
    ("model: m\nmax_steps: 2.5\n", r"field 'max_steps': expected an integer"),
    ("model: m\nlora: 8\n", r"field 'lora': expected a mapping"),
    ("- a\n- b\n", r"expected a mapping of config fields"),
    ("model: [unclosed\n", r"bad YAML"),
    ("lr: 0.1\n", r"field 'model' is required"),
    ("model: m\nbatch_size: 0\n", r"'batch_size' must be >= 1"),
])
def test_bad_configs_name_file_line_and_field(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_config(write(tmp_path, text))


def test_bad_overrides():
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(None, ["model=m", "lr"])
    with pytest.raises(ConfigError, match="'lora.ranks': unknown key"):
        load_config(None, ["model=m", "lora.ranks=3"])
    with pytest.raises(ConfigError, match="config file not found"):
        load_config("/nonexistent/run.yaml")


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(None, ["model=m", "lr=3e-5", "finetune=lora", "lora.target_modules=q_proj,k_proj"])
    path = save_config(cfg, tmp_path)
    assert path.name == "ctxrely_config.yaml"
    assert load_config(path) == cfg


def test_cli_dry_run_and_one_line_errors(tmp_path, capsys):
    from ctxrely.cli.main import main

    assert main(["train", "model=m", "lr=1e-4", "--dry-run"]) == 0
    assert "lr: 0.0001" in capsys.readouterr().out
    bad = write(tmp_path, "model: m\nsteps: 10\n")
    assert main(["train", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "line 2, field 'steps'" in err and "\n" not in err
