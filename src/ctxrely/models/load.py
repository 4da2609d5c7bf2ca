"""Load a causal LM and its tokenizer from a zoo name, a local folder or a hub id.

Weights load only from safetensors; ``trust_remote_code`` stays off unless asked for.

Example:
    >>> model, tok = load_model("path/to/saved-model")  # doctest: +SKIP
    >>> model, tok = load_model("smollm2-135m-instruct")  # packaged, converted once  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ctxrely.errors import ModelLoadError

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")


def _looks_like_path(name: str) -> bool:
    return (
        name.startswith((".", "/", "~"))
        or os.sep in name.strip("/").split("/", 1)[-1]  # more than one separator: org/name/sub
        or name.count("/") > 1
        or Path(name).suffix in {".safetensors", ".bin", ".gguf", ".json"}
    )


def resolve_model_source(name_or_path: str) -> tuple[str, str]:
    """Return ``(kind, location)`` with kind in {"zoo", "local", "hub"}; raise if a path is missing."""
    from ctxrely.models import zoo

    if zoo.is_zoo_name(name_or_path):
        return "zoo", name_or_path
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise ModelLoadError(f"{name_or_path}: expected a model folder (config.json + safetensors), got a file")
        if not (p / "config.json").exists():
            raise ModelLoadError(f"{name_or_path}: no config.json in this folder; is it a saved HF model?")
        check_model_folder(p)
        return "local", str(p)
    if _looks_like_path(name_or_path):
        raise ModelLoadError(f"model path not found: {name_or_path} (no such folder on this machine)")
    return "hub", name_or_path


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "spiece.model")


def check_model_folder(p: Path) -> None:
    """Name a missing tokenizer or a damaged weights file in a local model folder before transformers
    reports it as something else (e.g. a missing sentencepiece package, a SafetensorError)."""
    if not any((p / f).exists() for f in TOKENIZER_FILES):
        raise ModelLoadError(f"{p}: no tokenizer files in this folder (expected one of {', '.join(TOKENIZER_FILES)});"
                             " save the tokenizer beside the model (tokenizer.save_pretrained)")
    for w in sorted(p.glob("*.safetensors")):
        problem = safetensors_problem(w)
        if problem:
            raise ModelLoadError(f"{w}: {problem}; re-save or re-download the model")


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a ``.safetensors`` file's framing (header and size), or None; reads only
    the header, so it is cheap for any model size.

    Example:
        >>> import tempfile, pathlib
        >>> f = pathlib.Path(tempfile.mkdtemp()) / "model.safetensors"
        >>> _ = f.write_bytes(b"junk")
        >>> safetensors_problem(f)
        'truncated or corrupt safetensors file (4 bytes, shorter than its header)'
    """
    import json
    import struct

    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"truncated or corrupt safetensors file ({size} bytes, shorter than its header)"
            (n,) = struct.unpack("<Q", head)
            if n > size - 8:
                return f"truncated or corrupt safetensors file (header of {n} bytes in a {size}-byte file)"
            header = json.loads(f.read(n))
    except OSError as e:
        return f"cannot read ({e.strerror or type(e).__name__})"
    except (ValueError, UnicodeDecodeError):
        return "corrupt safetensors file (its header is not JSON)"
    if not isinstance(header, dict):
        return "corrupt safetensors file (its header is not a JSON object)"
    ends = [t.get("data_offsets", [0, 0])[1] for k, t in header.items() if k != "__metadata__" and isinstance(t, dict)]
    want = 8 + n + max((e for e in ends if isinstance(e, int)), default=0)
    if want != size:
        return f"truncated or corrupt safetensors file ({size} bytes; its header describes {want})"
    return None


def local_config(name_or_path: str) -> dict[str, Any] | None:
    """The ``config.json`` of a local or converted zoo model (its ``text_config`` for multimodal
    ones), read without loading anything; None for a hub id, an unconverted zoo model or no file."""
    import json

    from ctxrely.models import zoo

    try:
        kind, loc = resolve_model_source(name_or_path)
    except ModelLoadError:
        return None
    if kind == "hub":
        return None
    if kind == "zoo":
        st = zoo.status(loc)
        if not st["converted"]:
            return None
        loc = st["path"]
    try:
        cfg = json.loads((Path(loc) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(cfg, dict):
        return None
    return cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg


def config_int(name_or_path: str, *keys: str) -> int | None:
    """The first positive integer among ``keys`` of :func:`local_config`, or None.

    Example:
        >>> config_int("/no/such/model", "num_hidden_layers") is None
        True
    """
    cfg = local_config(name_or_path) or {}
    return next((cfg[k] for k in keys if isinstance(cfg.get(k), int) and cfg[k] > 0), None)


def config_layers(name_or_path: str) -> int | None:
    """The number of decoder layers the model's ``config.json`` states (see :func:`local_config`)."""
    return config_int(name_or_path, "num_hidden_layers", "n_layer", "num_layers")


WINDOW_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def check_device(device: str) -> str:
    """``device`` if this machine has it; a one-line ModelLoadError for CUDA / MPS that is not there.

    Example:
        >>> check_device("cpu")
        'cpu'
    """
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ModelLoadError(f"--device {device}: CUDA is not available on this machine (no GPU, or torch "
                                 "built without CUDA); use --device cpu")
        index = device.partition(":")[2]
        if index.isdigit() and int(index) >= torch.cuda.device_count():
            raise ModelLoadError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.startswith("mps"):
        import torch

        if not torch.backends.mps.is_available():
            raise ModelLoadError(f"--device {device}: MPS is not available on this machine; use --device cpu")
    return device


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Give the tokenizer a pad token (eos, else unk) and left padding, for batched decoding."""
    if tokenizer.pad_token is None:
        fallback = tokenizer.eos_token or tokenizer.unk_token
        if fallback is None:
            raise ModelLoadError("tokenizer has neither a pad, eos nor unk token; set tokenizer.pad_token")
        log.info("tokenizer has no pad token; using %r for padding", fallback)
        tokenizer.pad_token = fallback
    tokenizer.padding_side = "left"
    return tokenizer


def resolve_device(device: str = "auto") -> str:
    """``auto``: this process's GPU under ``accelerate``/``torchrun`` (``LOCAL_RANK``), else ``cuda``
    when one is present, else ``cpu``; anything else is returned as given.

    Example:
        >>> resolve_device("cuda:1")
        'cuda:1'
    """
    if device != "auto":
        return device
    import os

    import torch

    if torch.cuda.is_available():
        return f"cuda:{os.environ['LOCAL_RANK']}" if "LOCAL_RANK" in os.environ else "cuda"
    return "cpu"


def resolve_dtype(dtype: str, device: str) -> Any:
    """``auto``: float32 on CPU, bfloat16 on a GPU that supports it, else the checkpoint's dtype."""
    import torch

    if dtype != "auto":
        return getattr(torch, dtype)
    if device.startswith("cuda") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32 if device == "cpu" else "auto"


def load_model(
    name_or_path: str,
    *,
    dtype: str = "auto",
    device: str = "cpu",
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode.

    Args:
        name_or_path: a name from ``ctxrely models``, a local folder, or a Hugging Face hub id.
        dtype: ``auto`` (float32 on CPU, bfloat16 on GPUs that support it, else the checkpoint's
            dtype) or an explicit dtype.
        device: ``auto`` (see :func:`resolve_device`), ``cpu``, ``cuda``, ``cuda:1``, ...
        trust_remote_code: run code shipped with the checkpoint (off by default).
        revision: hub revision.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    kind, loc = resolve_model_source(name_or_path)
    if kind == "zoo":
        from ctxrely.models import zoo

        loc = str(zoo.ensure_local(loc))
    device = check_device(resolve_device(device))
    torch_dtype = resolve_dtype(dtype, device)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "revision": revision}
    try:
        tokenizer = AutoTokenizer.from_pretrained(loc, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(loc, dtype=torch_dtype, use_safetensors=True, **kwargs)
    except OSError as e:
        where = "hub id" if kind == "hub" else "folder"
        also = (f" (there is no local folder {name_or_path!r} either)" if kind == "hub" else "")
        raise ModelLoadError(f"could not load {where} {name_or_path!r}{also}: {e}") from e
    except ValueError as e:
        if "trust_remote_code" in str(e):
            raise ModelLoadError(
                f"{name_or_path} needs custom code; rerun with --trust-remote-code if you trust it"
            ) from e
        raise ModelLoadError(f"could not load {name_or_path!r}: {e}") from e
    except Exception as e:
        if type(e).__name__ != "SafetensorError":
            raise
        raise ModelLoadError(f"{loc}: corrupt or truncated safetensors weights ({e}); re-save or re-download "
                             "the model") from e
    model.to(device)
    model.eval()
    return model, prepare_tokenizer(tokenizer)


def tokenizer_of(model: Any) -> Any:
    """The tokenizer saved with ``model``, from its ``name_or_path`` (a local folder or a cached hub id).

    Raises:
        ModelLoadError: the model does not say where it came from, or no tokenizer loads from there.
    """
    from transformers import AutoTokenizer

    name = getattr(getattr(model, "config", None), "_name_or_path", "") or getattr(model, "name_or_path", "")
    if not name:
        raise ModelLoadError("the model does not say where it came from (empty name_or_path)")
    try:
        tok = prepare_tokenizer(AutoTokenizer.from_pretrained(name))
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"loading one from the model's name_or_path {name!r} failed ({type(e).__name__})") from e
    log.info("no tokenizer given; loaded the one saved with the model (%s)", name)
    return tok


def model_max_length(model: Any, tokenizer: Any | None = None) -> int | None:
    """The model's context window in tokens, if it says."""
    cfg = getattr(model, "config", None)
    for attr in WINDOW_KEYS:
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    t = getattr(tokenizer, "model_max_length", None)
    return t if isinstance(t, int) and 0 < t < 1_000_000 else None
