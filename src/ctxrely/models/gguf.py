"""GGUF -> safetensors conversion for the offline model zoo (used by ``ctxrely.models.zoo.ensure_local``).

Loads a GGUF with transformers, dequantized to float32, fixes up the tokenizer (chat template,
pad token), drops the GGUF quantizer marker that makes ``save_pretrained`` refuse, and saves model
and tokenizer. No marker and no cache logic here: ``ctxrely.models.zoo`` owns those. torch and
transformers are imported inside the functions only.

Example:
    >>> from ctxrely.models import zoo
    >>> facts = convert(zoo.get("smollm2-135m-instruct"), Path("/tmp/out"), gguf_path)  # doctest: +SKIP
    >>> facts["architecture"]  # doctest: +SKIP
    'LlamaForCausalLM'
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctxrely.errors import ModelLoadError

if TYPE_CHECKING:
    from ctxrely.models.zoo import ZooModel

log = logging.getLogger(__name__)

# A minimal ChatML template, used only if a ChatML model's GGUF carries none.
CHATML_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
    "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@contextlib.contextmanager
def _progress(message: str, enabled: bool) -> Iterator[None]:
    """A rich spinner on stderr; transformers' own tqdm bars are muted meanwhile (they garble it).

    The legacy GGUF loader calls a bare ``tqdm`` that ignores ``disable_progress_bar()``; it is
    swapped for a silent one for the duration only, and restored in ``finally``.
    """
    if not enabled:
        yield
        return
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    gguf_mod = importlib.import_module("transformers.modeling_gguf_pytorch_utils")
    gguf_tqdm = getattr(gguf_mod, "tqdm", None)
    if gguf_tqdm is not None:
        gguf_mod.tqdm = functools.partial(gguf_tqdm, disable=True)
    try:
        with Console(stderr=True).status(message, spinner="dots"):
            yield
    finally:
        if gguf_tqdm is not None:
            gguf_mod.tqdm = gguf_tqdm
        if bars_were_on:
            hf_logging.enable_progress_bar()


def say(message: str, enabled: bool) -> None:
    """One line on stderr via rich if ``enabled``, else to the log at INFO."""
    if not enabled:
        log.info(message)
        return
    from rich.console import Console

    Console(stderr=True).print(message, soft_wrap=True, highlight=False)


def fix_tokenizer(tok: Any, m: ZooModel) -> None:
    """Keep the chat template of instruct models and make eos/pad usable for batched generation."""
    if m.chat_template == "chatml" and not getattr(tok, "chat_template", None):
        log.warning("%s: the GGUF carries no chat template; using a plain ChatML one", m.name)
        tok.chat_template = CHATML_TEMPLATE
    if tok.eos_token is None:
        raise ModelLoadError(f"{m.name}: the GGUF tokenizer defines no eos token")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token


def clear_quantization(model: Any) -> None:
    """Drop the GGUF quantizer marker so ``save_pretrained`` writes plain weights.

    Mirrors ``HfQuantizer.remove_quantization_config`` in transformers 5.x. Refuses if any weight
    is still packed (a module of GGUF blocks), since saving those as plain tensors would be wrong.
    """
    packed = sorted({type(mod).__name__ for mod in model.modules() if type(mod).__name__.startswith("Gguf")})
    if packed:
        raise ModelLoadError(f"GGUF weights were left packed ({', '.join(packed)}); cannot save them as plain")
    for attr in ("hf_quantizer", "quantization_method"):
        if hasattr(model, attr):
            with contextlib.suppress(AttributeError):
                delattr(model, attr)
    if getattr(model, "hf_quantizer", None) is not None:  # a class attribute survived the delattr
        model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False


def convert(m: ZooModel, out_dir: Path, gguf_path: Path, progress: bool = True) -> dict[str, Any]:
    """Load ``gguf_path`` of entry ``m`` with transformers, dequantized to float32; save to ``out_dir``.

    Writes model, tokenizer and generation config as safetensors + JSON, but no marker.

    Returns:
        timings and facts for the marker: ``load_s``, ``save_s``, ``architecture``, ``params``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    folder, fname = str(gguf_path.parent), gguf_path.name
    t0 = time.perf_counter()
    with _progress(f"Loading {m.name} from {fname} ({m.gguf_mb} MB GGUF, about a minute)...", progress):
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
        # dequantize=True: without it, architectures on the legacy GGUF path keep the quantizer attached
        # and save_pretrained refuses; with it transformers removes the marker itself.
        model = AutoModelForCausalLM.from_pretrained(
            folder, gguf_file=fname, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
        )
    load_s = time.perf_counter() - t0
    fix_tokenizer(tok, m)
    clear_quantization(model)
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    gen = model.generation_config
    if gen is not None and gen.pad_token_id is None:
        gen.pad_token_id = tok.pad_token_id
    t1 = time.perf_counter()
    with _progress(f"Saving {m.name} as safetensors...", progress):
        model.save_pretrained(out_dir, safe_serialization=True)
        tok.save_pretrained(out_dir)
    save_s = time.perf_counter() - t1
    return {
        "load_s": round(load_s, 2),
        "save_s": round(save_s, 2),
        "architecture": type(model).__name__,
        "params": sum(p.numel() for p in model.parameters()),
    }
