"""What the local Hugging Face hub cache says: the commit a revision resolved to, and why a load failed."""

from __future__ import annotations

from pathlib import Path

_HUB_ERRORS = {"LocalEntryNotFoundError", "OfflineModeIsEnabled", "ConnectionError", "HfHubHTTPError",
               "RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError"}
_HUB_WORDS = ("couldn't connect to", "offline mode", "is not a local folder and is not a valid model identifier")


def commit_of(repo: str, revision: str | None) -> str | None:
    """The snapshot commit ``repo@revision`` resolved to in the cache; else the revision as given."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(repo, "config.json", revision=revision)
    except Exception:
        cached = None
    if isinstance(cached, str) and "snapshots" in Path(cached).parts:
        parts = Path(cached).parts
        return parts[parts.index("snapshots") + 1]
    return revision


def describe(name: str, exc: BaseException, hub: bool) -> str:
    """One line naming the model: 'not cached and hub unreachable' for hub misses, else the library's line."""
    where = f"cannot load model {name!r}"
    if hub and _from_hub(exc):
        from huggingface_hub import constants

        if constants.HF_HUB_OFFLINE:
            return (f"{where}: it is not in the local Hugging Face cache "
                    "and the hub is unreachable (HF_HUB_OFFLINE is set)")
        return f"{where}: could not fetch it from the Hugging Face hub ({_first_line(exc)})"
    return f"{where}: {type(exc).__name__}: {_first_line(exc)}"


def _from_hub(exc: BaseException | None) -> bool:
    """True when a hub error is anywhere in the exception's chain (transformers re-raises as OSError)."""
    for _ in range(10):
        if exc is None:
            return False
        if any(cls.__name__ in _HUB_ERRORS for cls in type(exc).__mro__):
            return True
        if any(word in str(exc) for word in _HUB_WORDS):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
