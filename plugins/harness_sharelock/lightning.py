"""Official ShareLock checkpoints: PyTorch Lightning ``.ckpt`` files, read safely and written back.

The official trainer saves ``{"state_dict": ..., "hyper_parameters": config, ...}`` where
``config`` is the OmegaConf ``DictConfig`` of ``configs/default_config.yaml`` (Lightning
pickles it as is, with ``hparams_type``). Reading uses ``torch.load(weights_only=True)``,
with inert stand-ins allowed for OmegaConf's container and node classes only: they record
pickled state and never run code, and are turned into plain dicts and lists right away, so
neither OmegaConf nor Lightning has to be installed and no arbitrary object can be built.

Tower names in ``hyper_parameters.model`` are mapped to harness names: DINOv2 hub models to
``hf:facebook/dinov2-*`` (the final-norm CLS token, as torch hub's DINOv2 returns) and a
language model ``X`` to ``lm:X#pool=last`` (left padding, last token of the final layer). Images
go through the official *evaluation* transform (Resize 256, CenterCrop 224, ImageNet
normalisation): the official ``encode_image`` passes the model name as the augmentation flag
and so applies training augmentation at inference; harness does not.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from harness import ModelLoadError, first_line, load_state_strict, write_bytes_atomic

from .config import ShareLockConfig

DINOV2_SIZES = {"s": "small", "b": "base", "l": "large", "g": "giant"}
VISION_TOWERS = {
    **{f"dinov2_vit{k}14": f"hf:facebook/dinov2-{v}" for k, v in DINOV2_SIZES.items()},
    **{f"dinov2_vit{k}14_reg": f"hf:facebook/dinov2-with-registers-{v}" for k, v in DINOV2_SIZES.items()},
}
_OMEGACONF = ("omegaconf.dictconfig.DictConfig", "omegaconf.listconfig.ListConfig", "omegaconf.base.ContainerMetadata",
              "omegaconf.base.Metadata", "omegaconf.nodes.AnyNode", "omegaconf.nodes.StringNode",
              "omegaconf.nodes.IntegerNode", "omegaconf.nodes.FloatNode", "omegaconf.nodes.BooleanNode",
              "omegaconf.nodes.BytesNode")
_ATTRIBUTE_DICTS = ("pytorch_lightning.utilities.parsing.AttributeDict", "lightning.fabric.utilities.data.AttributeDict",
                    "lightning_fabric.utilities.data.AttributeDict")


class _Pickled:
    """Inert record of a pickled object's state (``BUILD`` stores it; nothing else runs)."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__.update(state if isinstance(state, dict) else {"_state": state})


class _PickledDict(dict):  # type: ignore[type-arg]
    """Stand-in for dict subclasses (``defaultdict``, Lightning's ``AttributeDict``)."""

    def __init__(self, *args: Any) -> None:
        super().__init__()


class _AnyType:
    """Stand-in for ``typing.Any`` inside OmegaConf metadata."""


def _allowed() -> list[Any]:
    stand_ins: list[Any] = [(type(name.rsplit(".", 1)[1], (_Pickled,), {}), name) for name in _OMEGACONF]
    stand_ins += [(_PickledDict, name) for name in (*_ATTRIBUTE_DICTS, "collections.defaultdict")]
    return stand_ins + [(_AnyType, "typing.Any"), dict, list, int, float, str, bool, tuple, type(None)]


def plain(value: Any) -> Any:
    """OmegaConf stand-ins -> dicts, lists and scalars (interpolations stay as their strings)."""
    if isinstance(value, _Pickled):
        state = value.__dict__
        return plain(state["_content"] if "_content" in state else state.get("_val"))
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def read(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """(state dict, plain hyper-parameters, harness meta or {}) of a Lightning checkpoint (``weights_only=True``)."""
    import torch

    try:
        with torch.serialization.safe_globals(_allowed()):
            raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelLoadError(f"{path}: no such checkpoint file") from None
    except Exception as exc:  # UnpicklingError (a disallowed global), corrupt zip, ...
        first = first_line(exc)
        detail = next((line.strip() for line in str(exc).splitlines() if "Unsupported global" in line), first)
        raise ModelLoadError(f"{path}: cannot read safely as a Lightning checkpoint: {detail}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("state_dict"), dict):
        raise ModelLoadError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    hparams = plain(raw.get("hyper_parameters") or {})
    return dict(raw["state_dict"]), hparams, plain(raw.get("harness") or {})


def config_from(hparams: dict[str, Any], where: str) -> ShareLockConfig:
    """A ``ShareLockConfig`` from the official nested config (missing keys keep their defaults)."""
    model, training, data, logging = (hparams.get(k) or {} for k in ("model", "training", "data", "logging"))
    vision, language = model.get("vision_projector") or {}, model.get("language_projector") or {}
    if vision.get("normalize", True) != language.get("normalize", True):
        raise ModelLoadError(f"{where}: projectors that normalise differently are not supported")
    values = {"vision_hidden_size": vision.get("hidden_size"), "vision_num_layers": vision.get("num_layers"),
              "language_hidden_size": language.get("hidden_size"), "language_num_layers": language.get("num_layers"),
              "normalize": language.get("normalize"), "embedding_space_dim": model.get("embedding_space_dim"),
              "val_split_num": data.get("val_split_num"), "seed": hparams.get("seed"),
              **{k: training.get(k) for k in ("max_steps", "lr_warmup_steps", "learning_rate", "lr_schedule",
                                              "batch_size", "accumulate_grad_batches", "weight_decay",
                                              "early_stopping", "early_stopping_patience")},
              "max_grad_norm": training.get("max_grad_norm"), "val_check_interval": logging.get("val_check_interval")}
    values = {k: v for k, v in values.items() if v is not None}
    return ShareLockConfig.from_dict(values, where=f"{where}: hyper_parameters")


def _dims(state: dict[str, Any], config: ShareLockConfig) -> tuple[int, int]:
    """(vision_dim, language_dim) read off the weights."""
    def first_and_last(prefix: str) -> tuple[int, int] | None:
        weights = sorted((int(k.split(".")[2]), v) for k, v in state.items()
                         if k.startswith(prefix) and k.endswith(".weight") and v.ndim == 2)
        return (weights[0][1].shape[1], weights[-1][1].shape[0]) if weights else None

    vision, language = first_and_last("vision_projector.projection."), first_and_last("language_projector.projection.")
    if vision and language:
        return vision[0], language[0]
    if language:  # identity vision side: the shared width is the vision width
        return language[1], language[0]
    if vision:
        return vision[0], vision[1]
    raise ModelLoadError("no projector weights found (expected 'language_projector.projection.*' keys)")


def load(path: Path) -> tuple[Any, dict[str, Any]]:
    """(ShareLock in eval mode, meta) from an official (or exported) Lightning checkpoint."""
    from .model import ShareLock

    state, hparams, exported = read(path)
    config = config_from(hparams, str(path))
    try:
        vision_dim, language_dim = _dims(state, config)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{path}: {exc}") from None
    model = ShareLock(config, vision_dim, language_dim)
    load_state_strict(model, state, str(path), "the ShareLock config")
    if exported:
        return model.eval(), exported
    towers = hparams.get("model") or {}
    official_vision, official_language = towers.get("vision_encoder"), towers.get("language_encoder")
    meta = {"vision": {"name": VISION_TOWERS.get(str(official_vision)), "official_name": official_vision},
            "language": {"name": f"lm:{official_language}#pool=last" if official_language else None,
                         "official_name": official_language},
            "transform": "sharelock", "source": {"lightning_checkpoint": str(path)}}
    return model.eval(), meta


def dumps(model: Any, meta: dict[str, Any], global_step: int = 0) -> bytes:
    """``model`` in the official format (plain-dict ``hyper_parameters``; ``meta`` under ``harness``)."""
    import torch

    c = model.config
    hparams = {
        "seed": c.seed, "data": {"val_split_num": c.val_split_num},
        "model": {"embedding_space_dim": c.embedding_space_dim,
                  "vision_encoder": (meta.get("vision") or {}).get("name"),
                  "vision_projector": {"hidden_size": c.vision_hidden_size, "num_layers": c.vision_num_layers,
                                       "normalize": c.normalize},
                  "language_encoder": (meta.get("language") or {}).get("name"),
                  "language_projector": {"hidden_size": c.language_hidden_size, "num_layers": c.language_num_layers,
                                         "normalize": c.normalize}},
        "training": {k: getattr(c, k) for k in ("max_steps", "lr_warmup_steps", "learning_rate", "lr_schedule",
                                                 "batch_size", "accumulate_grad_batches", "max_grad_norm",
                                                 "weight_decay", "early_stopping", "early_stopping_patience")},
        "logging": {"val_check_interval": c.val_check_interval},
    }
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save({"epoch": 0, "global_step": global_step, "pytorch-lightning_version": "2.4.0",
                "state_dict": state, "hyper_parameters": hparams, "harness": meta}, buffer)
    return buffer.getvalue()


def write(path: Path, model: Any, meta: dict[str, Any], global_step: int = 0) -> Path:
    """Write :func:`dumps` to ``path`` atomically."""
    return write_bytes_atomic(Path(path), dumps(model, meta, global_step))
