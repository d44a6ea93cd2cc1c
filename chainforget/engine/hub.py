"""Opt-in Hugging Face Hub models: ``hf:ORG/NAME[@REVISION]``, through the huggingface_hub cache.

Nothing is fetched unless the user names an ``hf:`` id, and then only into the standard cache
(``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``). ``HF_HUB_OFFLINE=1`` means cache only.
Both are read when a model is resolved, not when a library is imported, so a test or a job can point them elsewhere.
The fingerprint of a Hub model is the commit hash its revision resolves to, so a moved branch is a new model.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from chainforget.errors import ModelError

PREFIX = "hf:"
# Weights, configs, tokenizers and (only used with --trust-remote-code) code; never pickled *.bin weights.
ALLOW = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.py", "*.jinja", "tokenizer*"]
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class HubId:
    repo: str
    revision: str = "main"

    def __str__(self) -> str:
        return f"{PREFIX}{self.repo}" + (f"@{self.revision}" if self.revision != "main" else "")


def is_hub_id(name: str) -> bool:
    return isinstance(name, str) and name.startswith(PREFIX)


def parse(name: str) -> HubId:
    """``hf:ORG/NAME[@REVISION]`` -> HubId; a one-line error for anything else."""
    body = name[len(PREFIX):]
    repo, at, revision = body.partition("@")
    if not _ID.match(repo) or (at and not revision.strip()):
        raise ModelError(f"{name!r} is not a Hub model id; write hf:ORG/NAME or hf:ORG/NAME@REVISION "
                         f"(e.g. hf:HuggingFaceTB/SmolLM2-360M-Instruct)")
    return HubId(repo, revision.strip() or "main")


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def cache_dir() -> Path:
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                     os.path.join(os.path.expanduser("~"), ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def snapshot(hub: HubId) -> Path:
    """The local snapshot directory of ``hub`` (downloaded into the cache first unless offline)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    off = offline()
    try:
        path = snapshot_download(hub.repo, revision=hub.revision, cache_dir=str(cache_dir()),
                                 local_files_only=off, allow_patterns=ALLOW)
    except GatedRepoError:
        raise ModelError(f"{hub} is gated; accept its licence on huggingface.co and log in with "
                         f"`hf auth login` (or set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise ModelError(f"{hub}: revision {hub.revision!r} does not exist; use a branch, tag or commit "
                         f"of {hub.repo}") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{hub}: no such model repository on the Hub (or it is private); check the name") from None
    except LocalEntryNotFoundError:
        where = "HF_HUB_OFFLINE is set" if off else "the Hub could not be reached"
        raise ModelError(f"{hub} is not in the Hugging Face cache {cache_dir()} and {where}; download it once "
                         f"with `hf download {hub.repo}"
                         + (f" --revision {hub.revision}" if hub.revision != "main" else "")
                         + "` or point HF_HUB_CACHE/HF_HOME at a cache that holds it") from None
    except OSError as exc:  # network failures and the like: the environment, one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"could not fetch {hub}: {first}; retry, or set HF_HUB_OFFLINE=1 to use the cache") from None
    return Path(path)


def commit_of(path: Path) -> str:
    """The commit hash of a snapshot directory (``.../snapshots/<commit>``)."""
    name = Path(path).name
    if not _COMMIT.match(name):
        raise ModelError(f"{path} is not a Hugging Face cache snapshot (expected .../snapshots/<commit hash>)")
    return name
