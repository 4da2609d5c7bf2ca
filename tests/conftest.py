"""Shared fixtures: tiny random HF models (several architectures) saved to a temp dir and loaded
through the same path a user's model takes; the published data folder when present."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

import pytest  # noqa: E402

try:  # tiny models are overhead-bound: one thread is as fast and does not fight other processes
    import torch

    torch.set_num_threads(1)
except ImportError:
    pass

# beside the checkout (CI); CTXRELY_SHARED_DATA points elsewhere (e.g. from a git worktree)
SHARED_DATA = Path(os.environ.get("CTXRELY_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
ARCHS = ("llama", "gpt_neox", "gpt2", "qwen2")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"published data folder {SHARED_DATA} is absent (it sits beside the checkout in CI)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_tokenizer():
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    from ctxrely.models.tiny import build_tokenizer

    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_tokenizer):
    """``tiny_model_dir(arch)`` -> folder of a saved tiny model of that architecture (built once)."""
    from ctxrely.models.tiny import save_tiny

    cache: dict[str, Path] = {}

    def make(arch: str = "llama") -> Path:
        if arch not in cache:
            cache[arch] = save_tiny(tmp_path_factory.mktemp(f"tiny-{arch}"), arch=arch, tokenizer=tiny_tokenizer)
        return cache[arch]

    return make


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_dir):
    """A loaded tiny Llama ``(model, tokenizer)`` (shared: do not train it in place)."""
    from ctxrely.models.load import load_model

    return load_model(str(tiny_model_dir("llama")))
