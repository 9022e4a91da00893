"""``ShareLockConfig``: every architecture and training value of ShareLock, with the reference defaults.

Defaults are those of the official ``configs/default_config.yaml`` and ``train.py``
(JonaRuthardt/ShareLock): a 4-layer language projector of width 4096, an identity vision
projector, a fixed logit scale ``exp(2.6592) = 1/0.07``, Adam (lr 1e-3, weight decay 1e-4),
a cosine schedule with 150 warm-up steps over 5000 optimizer steps, micro-batches of 1024
accumulated 16 times, gradient clipping at norm 1, 50,000 held-out validation pairs, seed 42.

Units follow PyTorch Lightning, which the official trainer uses: ``max_steps`` and
``lr_warmup_steps`` count optimizer steps; ``val_check_interval`` counts micro-batches;
``early_stopping_patience`` counts validation checks.

``seed`` (42 in the reference) seeds the train/validation split, the head's initialisation and the
order of micro-batches. Where harness trains a head (``harness train sharelock``, the ``viterb``
kind), it is the run's ``--seed``: one seed per run, never a second one in the config.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from harness import UsageError

PRECISIONS = ("32-true", "bf16-mixed", "tf32")
#: The official ``misc.py::loss`` constant: logit scale = exp(2.6592) ~ 14.2857 ~ 1/0.07.
LOG_LOGIT_SCALE = 2.6592


@dataclass(frozen=True)
class ShareLockConfig:
    """Architecture and training of a ShareLock head (see the module docstring for units)."""

    # -- projectors (Linear -> BatchNorm1d -> ReLU -> Dropout blocks, then Linear; 0 layers = identity)
    language_hidden_size: int = 4096
    language_num_layers: int = 4
    vision_hidden_size: int = 4096
    vision_num_layers: int = 0
    #: Shared width when both projectors have layers; otherwise the identity side's feature width.
    embedding_space_dim: int = 768
    normalize: bool = True
    dropout: float = 0.2
    log_logit_scale: float = LOG_LOGIT_SCALE
    # -- optimisation
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    lr_schedule: str = "cosine"  # or "constant"
    lr_warmup_steps: int = 150
    max_steps: int = 5000
    batch_size: int = 1024
    accumulate_grad_batches: int = 16
    max_grad_norm: float = 1.0
    # -- validation, early stopping, seed
    val_split_num: int = 50000
    val_check_interval: int = 500
    early_stopping: bool = True
    early_stopping_patience: int = 50
    early_stopping_min_delta: float = 0.1
    seed: int = 42
    #: Lightning's names: ``32-true`` (the reference), ``bf16-mixed`` (forward and loss under bf16
    #: autocast, float32 weights and optimizer), or ``tf32`` (float32 with TF32 matrix products on CUDA).
    precision: str = "32-true"

    def __post_init__(self) -> None:
        problems = [f"{name} must be >= {low}, got {getattr(self, name)}" for name, low in (
            ("language_num_layers", 0), ("vision_num_layers", 0), ("language_hidden_size", 1),
            ("vision_hidden_size", 1), ("embedding_space_dim", 1), ("max_steps", 1), ("batch_size", 2),
            ("accumulate_grad_batches", 1), ("lr_warmup_steps", 0), ("val_split_num", 0),
            ("val_check_interval", 1), ("early_stopping_patience", 1)) if getattr(self, name) < low]
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.lr_schedule not in ("cosine", "constant"):
            problems.append(f"lr_schedule must be 'cosine' or 'constant', got {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.learning_rate <= 0 or self.weight_decay < 0 or self.max_grad_norm <= 0:
            problems.append("learning_rate and max_grad_norm must be > 0, weight_decay >= 0")
        if problems:
            raise UsageError(f"ShareLock config: {'; '.join(problems)}")

    @property
    def logit_scale(self) -> float:
        """The fixed (not learned) similarity scale, ``exp(log_logit_scale)``."""
        return math.exp(self.log_logit_scale)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able mapping of every field."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "ShareLock config") -> ShareLockConfig:
        """Build from a mapping; unknown keys are an error naming the known ones."""
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise UsageError(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return cls(**{name: _coerce(name, value, type(known[name].default), where) for name, value in values.items()})

    def replace(self, **changes: Any) -> ShareLockConfig:
        """A copy with ``changes`` applied (validated like the constructor)."""
        return type(self).from_dict({**self.to_dict(), **changes})


def _coerce(name: str, value: Any, kind: type, where: str) -> Any:
    """``value`` as the field's type: numbers for floats (also ``"1e-3"``), integral numbers for ints."""
    try:
        if kind is float and not isinstance(value, bool):
            return float(value)
        if kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        if kind in (bool, str) and isinstance(value, kind):
            return value
    except (TypeError, ValueError):
        pass
    raise UsageError(f"{where}: {name} must be {kind.__name__}, got {value!r}")


#: One line per field: ``harness train sharelock --help`` and the schemas show them.
FIELD_HELP = {
    "language_hidden_size": "width of the language projector's hidden layers",
    "language_num_layers": "language projector layers (0: identity)",
    "vision_hidden_size": "width of the vision projector's hidden layers",
    "vision_num_layers": "vision projector layers (0: identity, the reference: a locked image tower)",
    "embedding_space_dim": "shared width when both projectors have layers",
    "normalize": "L2-normalise projector outputs",
    "dropout": "dropout of the projector blocks",
    "log_logit_scale": "log of the fixed similarity scale",
    "learning_rate": "Adam learning rate",
    "weight_decay": "Adam weight decay",
    "lr_schedule": "cosine (with warm-up) or constant",
    "lr_warmup_steps": "warm-up optimizer steps of the cosine schedule",
    "max_steps": "optimizer steps",
    "batch_size": "pairs per micro-batch",
    "accumulate_grad_batches": "micro-batches per optimizer step",
    "max_grad_norm": "gradient clipping norm",
    "val_split_num": "pairs held out for validation (0: none, keep the final weights)",
    "val_check_interval": "micro-batches between validation checks",
    "early_stopping": "stop after early_stopping_patience checks without improvement",
    "early_stopping_patience": "validation checks without improvement before stopping",
    "early_stopping_min_delta": "smallest validation-loss decrease that counts as an improvement",
    "seed": "seeds the split, the initialisation and the batch order",
    "precision": "32-true (reference), bf16-mixed or tf32",
}
_ENUMS = {"lr_schedule": ["cosine", "constant"], "precision": list(PRECISIONS)}


def field_schemas(exclude: tuple[str, ...] = ("seed",), defaults: bool = False) -> dict[str, dict[str, Any]]:
    """JSON Schema of each ``ShareLockConfig`` field but ``exclude`` (types from the defaults, the two
    enumerations, ``defaults`` filled in when asked); ranges are checked by ``ShareLockConfig`` itself."""
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string"}
    props: dict[str, dict[str, Any]] = {}
    for f in fields(ShareLockConfig):
        if f.name in exclude:
            continue
        prop: dict[str, Any] = {"type": kinds[type(f.default)], "description": FIELD_HELP[f.name]}
        if f.name in _ENUMS:
            prop["enum"] = _ENUMS[f.name]
        if defaults:
            prop["default"] = f.default
        props[f.name] = prop
    return props


def config_schema(exclude: tuple[str, ...] = ("seed",)) -> dict[str, Any]:
    """JSON Schema of a mapping of config overrides (the ``viterb`` kind's ``params.sharelock``): every
    field but ``exclude`` (by default ``seed``: the head's seed is the run's ``--seed``)."""
    return {"type": "object", "additionalProperties": False, "properties": field_schemas(exclude)}
