"""harness: a plugin-based evaluation harness for vision and vision-language representations.

This module is the public API: everything a plugin may use is exported here (``__all__``), plus
``harness.testing`` for plugin tests. Every other module of the package is private and may change
without notice (pytest's ``pytest`` / ``_pytest`` split); ``tests/test_contract.py`` fails on any
plugin or example that imports one. Importing this package is cheap: names load on first use,
and it pulls in neither torch nor any plugin.
"""

from __future__ import annotations

import importlib
import time
from typing import Any

import pluggy

#: ``time.perf_counter()`` when harness was first imported: where ``cost.process_s`` counts from on
#: systems without ``/proc`` (see ``harness.hardware.process_seconds``).
_IMPORTED_AT = time.perf_counter()

__version__ = "0.1.0"

#: Marker for hook implementations; third-party plugins may also build their own
#: ``pluggy.HookimplMarker("harness")``.
hookimpl = pluggy.HookimplMarker("harness")

_EXPORTS = {
    # specs returned by the register hooks
    "specs": ("CAPABILITIES", "ModelSpec", "TaskKindSpec", "MetricSpec", "TrainerSpec", "WriterSpec", "DatasetSpec"),
    # models by capability
    "models": ("ImageEmbedder", "TextEmbedder", "ImageTokenizer", "Generator", "LoglikelihoodScorer",
               "GenerationRequest", "Generation", "IMAGE_PLACEHOLDER", "LoglikelihoodRequest", "Loglikelihood", "LoadContext",
               "load_state_strict", "state_fingerprint", "n_parameters", "layer_index"),
    # how things run
    "execution": ("ExecutionConfig", "TORCH_DTYPES", "torch_dtype", "autocast", "split_on_oom", "is_out_of_memory",
                  "cache_root"),
    # what task kinds and trainers receive
    "taskkind": ("TaskContext", "TaskKind", "ModelFeatures", "Compute"),
    "training": ("TrainContext", "TrainData", "TrainModel"),
    "dataset": ("subset_indices", "builder_paths", "builder_images", "builder_json"),
    "imageloader": ("decode_image",),
    "preprocessing": ("PREPROCESSINGS", "preprocessing_choices"),
    # errors a plugin raises (each is one line for the user)
    "errors": ("HarnessError", "UsageError", "UnknownNameError", "DuplicateNameError", "SpecError", "DataError",
               "ModelLoadError", "ResultError", "PluginError", "IncompatibleError"),
    # results
    "result": ("read_result", "validate_result", "dumps"),
    "resultfile": ("model_id", "result_path", "write_result"),
    "leaderboard": ("latest_per_seed",),
    "runner": ("RunConfig",),
    "atomicfile": ("write_bytes_atomic", "write_text_atomic"),
    "yamlfile": ("read_yaml_file",),
    "contenthash": ("FileDigests",),
    # loading helpers for model plugins
    "hub": ("cached_commit", "first_line", "hub_failure"),
    "torchcompat": ("ensure_torchvision",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = ["__version__", "hookimpl", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'harness' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"harness.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
