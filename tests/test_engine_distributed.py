"""``ctxrely.engine.distributed`` in one process: which case applies, what the helpers do without a
process group, the timeout setting, the old ``ctxrely.track.distributed`` path. The multi-process
behaviour (FSDP lock-step, failures, nodes) is in ``tests/test_scale_sharded.py``."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from ctxrely.engine import distributed as d  # noqa: E402
from ctxrely.errors import CtxrelyError  # noqa: E402


def test_one_process_is_single_and_inference_mode(tiny_model_dir):
    from ctxrely.models.load import load_model

    model, _ = load_model(str(tiny_model_dir("llama")))
    assert d.world_info() == (0, 1)
    assert d.sharding(model) == "single" and not d.is_sharded(model)
    with d.inference_context(model):
        assert torch.is_inference_mode_enabled()


def test_zero3_detected_from_partitioned_parameters():
    """DeepSpeed ZeRO-3 tags every partitioned parameter with ``ds_id``; an engine reports its stage."""
    lin = torch.nn.Linear(2, 2)
    assert d._wrapper_kind(lin)[0] == "replicated"
    for i, p in enumerate(lin.parameters()):
        p.ds_id = i
    assert d._wrapper_kind(lin) == ("zero3", lin) and d.is_sharded(lin)
    with d.inference_context(lin):  # sharded parameters: no_grad, not inference mode
        assert not torch.is_inference_mode_enabled() and not torch.is_grad_enabled()

    class Engine(torch.nn.Module):
        def zero_optimization_stage(self):
            return 2

    assert d._wrapper_kind(Engine())[0] == "replicated"


def test_run_sharded_and_lockstep_without_a_group():
    assert d.run_sharded(lambda xs: [x * 10 for x in xs], [3, 1, 2], None, "toy") == [30, 10, 20]
    with pytest.raises(ValueError, match="2 results for 3 items"):
        d.run_sharded(lambda xs: xs[:2], [1, 2, 3], None, "toy")
    with pytest.raises(KeyError), d.lockstep(None, "toy"):  # one process: an error passes through unchanged
        raise KeyError("x")


def test_timeout_setting(monkeypatch):
    monkeypatch.delenv("CTXRELY_DIST_TIMEOUT", raising=False)
    assert d.timeout_s() == d.DEFAULT_TIMEOUT_S
    monkeypatch.setenv("CTXRELY_DIST_TIMEOUT", "2.5")
    assert d.timeout_s() == 2.5
    monkeypatch.setenv("CTXRELY_DIST_TIMEOUT", "soon")
    with pytest.raises(CtxrelyError, match="CTXRELY_DIST_TIMEOUT must be a number"):
        d.timeout_s()


def test_old_module_path_is_an_alias():
    from ctxrely.track import distributed as old

    assert old.shard is d.shard and old.gather_in_order is d.gather_in_order and old.world_info is d.world_info


def test_shipped_accelerate_configs_load():
    """Every config in examples/accelerate/ is one accelerate accepts (unknown keys are an error there)."""
    pytest.importorskip("accelerate")
    from pathlib import Path

    from accelerate.commands.config.config_args import ClusterConfig

    paths = sorted((Path(__file__).resolve().parents[1] / "examples" / "accelerate").glob("*.yaml"))
    kinds = {p.stem: ClusterConfig.from_yaml_file(p) for p in paths}
    assert set(kinds) == {"ddp", "fsdp1", "fsdp2", "fsdp2_two_nodes", "zero3"}
    assert kinds["fsdp2"].fsdp_config["fsdp_version"] == 2 and kinds["fsdp1"].fsdp_config["fsdp_version"] == 1
    assert kinds["zero3"].deepspeed_config["zero_stage"] == 3 and kinds["fsdp2_two_nodes"].num_machines == 2
