"""Training a ShareLock head on precomputed (image feature, caption feature) pairs.

What the official PyTorch Lightning trainer does, without Lightning:

- the pairs are split once with ``random.Random(seed)``: the first ``val_split_num`` of a
  shuffled index list are held out for validation, the rest train;
- each epoch visits the training pairs in a fresh seeded order, in micro-batches of
  ``batch_size`` (the last, partial one included; one of a single pair is skipped, since
  BatchNorm cannot train on it); the loss of a micro-batch is divided by
  ``accumulate_grad_batches`` and its gradients accumulate; every ``accumulate_grad_batches``
  micro-batches (and at the end of an epoch, as Lightning does) the gradient norm is clipped
  to ``max_grad_norm``, Adam steps and the cosine-with-warm-up schedule advances;
- every ``val_check_interval`` micro-batches, and once at the end, the mean validation
  loss is measured in eval mode; the weights with the lowest one are kept (Lightning's
  ``ModelCheckpoint``), and training stops early after ``early_stopping_patience`` checks
  without an improvement of ``early_stopping_min_delta``;
- without validation pairs (``val_split_num: 0``) the final weights are kept.

All features are moved to the device once and stay there; nothing is copied per batch.
``precision`` (Lightning's ``32-true`` by default, as the reference) may be ``bf16-mixed`` or
``tf32`` for speed on a GPU.
"""

from __future__ import annotations

import copy
import random
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

from .config import ShareLockConfig
from .model import ShareLock, clip_loss


@dataclass
class TrainResult:
    """The trained head (eval mode, on the training device) and how training went."""

    model: ShareLock
    n_train: int
    n_val: int
    steps: int
    micro_batches: int
    best_step: int | None
    best_val_loss: float | None
    final_train_loss: float
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def steps_per_s(self) -> float:
        """Optimizer steps per second of wall time."""
        return self.steps / self.seconds if self.seconds else float("nan")

    def summary(self) -> dict[str, Any]:
        """JSON-able description (saved next to checkpoints)."""
        return {"n_train": self.n_train, "n_val": self.n_val, "steps": self.steps,
                "micro_batches": self.micro_batches, "best_step": self.best_step,
                "best_val_loss": self.best_val_loss, "final_train_loss": self.final_train_loss,
                "seconds": round(self.seconds, 3), "history": self.history}


def split_indices(n: int, val_split_num: int, seed: int) -> tuple[list[int], list[int]]:
    """(train, val) indices: a ``random.Random(seed)`` shuffle, the first ``val_split_num`` validate."""
    if val_split_num and val_split_num >= n - 1:
        raise ValueError(f"val_split_num={val_split_num} leaves fewer than 2 of {n} pairs to train on")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return order[val_split_num:], order[:val_split_num]


def _schedule(optimizer: torch.optim.Optimizer, config: ShareLockConfig) -> Any:
    if config.lr_schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    from harness import ensure_torchvision

    ensure_torchvision()
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps=config.lr_warmup_steps,
                                           num_training_steps=config.max_steps)


@contextmanager
def precision(config: ShareLockConfig, device: str) -> Iterator[None]:
    """``config.precision`` for the forward passes and losses inside (see :class:`ShareLockConfig`)."""
    kind = device.split(":")[0]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32 or (config.precision == "tf32" and kind == "cuda")
    try:
        with torch.autocast(kind, dtype=torch.bfloat16, enabled=config.precision == "bf16-mixed"):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


@torch.no_grad()
def validation_loss(model: ShareLock, vision: torch.Tensor, language: torch.Tensor, rows: torch.Tensor,
                    config: ShareLockConfig) -> float:
    """Mean micro-batch loss over the held-out ``rows``, in eval mode (restores the previous mode)."""
    was_training = model.training
    model.eval()
    chunks = [rows[i:i + config.batch_size] for i in range(0, len(rows), config.batch_size)]
    with precision(config, str(vision.device)):
        losses = [clip_loss(*model(vision[chunk], language[chunk]), config.logit_scale).float() for chunk in chunks]
    model.train(was_training)
    return float(torch.stack(losses).mean())


def _micro_batches(n: int, config: ShareLockConfig, generator: torch.Generator) -> Any:
    """Endless ``(indices, last_of_epoch)``; each epoch a seeded permutation of ``range(n)``."""
    while True:
        order = torch.randperm(n, generator=generator)
        starts = [s for s in range(0, n, config.batch_size) if min(config.batch_size, n - s) >= 2]
        for i, start in enumerate(starts):
            yield order[start:start + config.batch_size], i == len(starts) - 1


class _Tracker:
    """Best validation loss and its weights (``ModelCheckpoint``), and early stopping (``EarlyStopping``)."""

    def __init__(self, config: ShareLockConfig) -> None:
        self.config = config
        self.best: float | None = None
        self.best_step: int | None = None
        self.state: dict[str, torch.Tensor] | None = None
        self.reference: float | None = None
        self.stale = 0

    def update(self, loss: float, step: int, model: ShareLock) -> bool:
        """Record a check; True when training should stop early."""
        if self.best is None or loss < self.best:
            self.best, self.best_step, self.state = loss, step, copy.deepcopy(model.state_dict())
        if self.reference is None or self.reference - loss > self.config.early_stopping_min_delta:
            self.reference, self.stale = loss, 0
        else:
            self.stale += 1
        return self.config.early_stopping and self.stale >= self.config.early_stopping_patience


@dataclass
class _Run:
    """The mutable state of one training run."""

    config: ShareLockConfig
    model: ShareLock
    optimizer: torch.optim.Optimizer
    scheduler: Any
    tracker: _Tracker
    step: int = 0
    micro: int = 0
    pending: int = 0
    last_loss: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list)

    def micro_step(self, vision: torch.Tensor, language: torch.Tensor, end_of_epoch: bool) -> bool:
        """Forward/backward one micro-batch; step the optimizer when due. True when a step was taken."""
        config = self.config
        with precision(config, str(vision.device)):
            loss = clip_loss(*self.model(vision, language), config.logit_scale)
        (loss / config.accumulate_grad_batches).backward()
        self.micro, self.pending, self.last_loss = self.micro + 1, self.pending + 1, float(loss.detach())
        if self.pending < config.accumulate_grad_batches and not end_of_epoch:
            return False
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step, self.pending = self.step + 1, 0
        return True

    def validate_if_due(self, vision: torch.Tensor, language: torch.Tensor, rows: torch.Tensor) -> bool:
        """Validate on ``rows`` every ``val_check_interval`` micro-batches and at the end; True to stop early."""
        due = self.micro % self.config.val_check_interval == 0 or self.step == self.config.max_steps
        if not len(rows) or not due:
            return False
        val = validation_loss(self.model, vision, language, rows, self.config)
        self.history.append({"step": self.step, "train_loss": self.last_loss, "val_loss": val})
        return self.tracker.update(val, self.step, self.model)


def train(config: ShareLockConfig, vision: Any, language: Any, device: str = "cpu",
          progress: bool | None = None, bar: Callable[..., Any] | None = None) -> TrainResult:
    """Train a head on ``(N, Dv)`` vision and ``(N, Dl)`` language features (numpy or torch).

    Progress: ``bar(desc=..., total=...)`` when given (``ctx.bar`` of a task or trainer context), else a
    tqdm bar shown when ``progress`` (default: stderr is a terminal)."""
    from tqdm.auto import tqdm

    start = time.perf_counter()
    vision = torch.as_tensor(vision, dtype=torch.float32).to(device)
    language = torch.as_tensor(language, dtype=torch.float32).to(device)
    if len(vision) != len(language):
        raise ValueError(f"{len(vision)} image features but {len(language)} caption features")
    train_list, val_list = split_indices(len(vision), config.val_split_num, config.seed)
    train_rows = torch.as_tensor(train_list, dtype=torch.long, device=device)  # rows are gathered per
    val_rows = torch.as_tensor(val_list, dtype=torch.long, device=device)  # batch: features never copied
    with torch.random.fork_rng(devices=[]):  # CPU state restored; torch.manual_seed also seeds CUDA
        torch.manual_seed(config.seed)
        model = ShareLock(config, vision.shape[1], language.shape[1]).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
        run = _Run(config, model, optimizer, _schedule(optimizer, config), _Tracker(config))
        batches = _micro_batches(len(train_rows), config, torch.Generator().manual_seed(config.seed))
        show = sys.stderr.isatty() if progress is None else progress
        shown = bar(desc="sharelock", total=config.max_steps) if bar is not None else \
            tqdm(total=config.max_steps, desc="sharelock", disable=not show, leave=False)
        with shown:
            while run.step < config.max_steps:
                index, end_of_epoch = next(batches)
                rows = train_rows[index.to(device)]
                shown.update(int(run.micro_step(vision[rows], language[rows], end_of_epoch)))
                if run.validate_if_due(vision, language, val_rows):
                    break
        if run.tracker.state is not None:
            model.load_state_dict(run.tracker.state)
    model.eval()
    return TrainResult(model=model, n_train=len(train_rows), n_val=len(val_rows), steps=run.step, micro_batches=run.micro,
                       best_step=run.tracker.best_step, best_val_loss=run.tracker.best,
                       final_train_loss=run.last_loss, seconds=time.perf_counter() - start, history=run.history)
