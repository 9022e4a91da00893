"""The Hugging Face hub, as plugins meet it: cached snapshot commits and one-line load failures.

Shared by every plugin that loads through ``huggingface_hub`` (transformers, open_clip,
language models), so "not cached and the hub is unreachable" reads the same everywhere.
``huggingface_hub`` is imported only inside the functions.
"""

from __future__ import annotations

import re
from pathlib import Path

_HUB_ERRORS = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "HfHubHTTPError",
               "RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError", "EntryNotFoundError",
               "URLError"}
_HUB_WORDS = ("couldn't connect to", "offline mode", "is not a local folder and is not a valid model identifier")


def cached_commit(repo: str, filename: str, revision: str | None = None) -> str | None:
    """The snapshot commit ``repo@revision`` resolved to in the local cache, or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo, filename, revision=revision)
    except Exception:  # a malformed cache entry: no commit to report
        cached = None
    if isinstance(cached, str) and "snapshots" in Path(cached).parts:
        parts = Path(cached).parts
        return parts[parts.index("snapshots") + 1]
    return None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (ANSI colours removed), or its type name."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def from_hub(exc: BaseException | None) -> bool:
    """True when a hub error is anywhere in the exception's chain (libraries re-raise as OSError)."""
    for _ in range(10):
        if exc is None:
            return False
        if any(cls.__name__ in _HUB_ERRORS for cls in type(exc).__mro__):
            return True
        if any(word in str(exc) for word in _HUB_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def hub_failure(name: str, exc: BaseException) -> str | None:
    """One line for a hub miss ('not cached, hub unreachable' when offline); None if not a hub error."""
    if not from_hub(exc):
        return None
    from huggingface_hub import constants

    where = f"cannot load model {name!r}"
    if constants.HF_HUB_OFFLINE:
        return f"{where}: it is not in the local Hugging Face cache and the hub is unreachable (HF_HUB_OFFLINE is set)"
    return f"{where}: could not fetch it from the Hugging Face hub ({first_line(exc)})"
