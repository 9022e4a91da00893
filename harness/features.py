"""Feature extraction for task kinds: batching, workers, device and precision, the feature store,
data parallelism and decoding errors, in one place.

Task kinds ask ``ctx.features.images(ctx.split, column)`` / ``ctx.features.texts(strings)`` and
get float32 arrays in row order; they never see caching. With a store, every requested sample
is first looked up (key: encoder name + weights fingerprint, preprocessing fingerprint, dataset
identity, column, output, dtype; row: the split's sample id -- see ``harness.dataset.Split``);
only the missing ones are computed, in chunks of ``shard_size`` samples, each written to the
store as soon as it is done (so a killed run loses at most one chunk). A bare
``datasets.Dataset`` (no identity) is computed without the store.

Optional encoder extensions (duck-typed): ``preprocess_fingerprint`` (str) names the
preprocessing; without it the fingerprint is a hash of the encoder key (spec name, plugin and
version, weights revision), which is conservative: another name for the same preprocessing
misses the cache. ``encode_image_tokens(pixels, layer) -> (N, T, D)`` gives token-level outputs
(``output="tokens"``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from .dataset import Split
from .errors import DataError, IncompatibleError, PluginError, UnknownNameError
from .execution import DEFAULT_SHARD_SIZE, forward_mode, is_out_of_memory, split_on_oom
from .featurestore import FeatureSet, FeatureStore, canonical_json, text_id
from .imageloader import DecodeFailure, ImageRows, auto_workers, batches
from .processgroup import ProcessGroup

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)


def parse_output(output: str, layer: int | None = None) -> tuple[str, int | None]:
    """``"pooled"``, ``"tokens"`` (+ ``layer``) or ``"tokens@LAYER"`` as ``(kind, layer)``."""
    if output == "pooled":
        return "pooled", None
    kind, at, text = output.partition("@")
    if kind != "tokens":
        raise IncompatibleError(f"image output must be 'pooled', 'tokens' or 'tokens@LAYER', got {output!r}")
    if at:
        try:
            layer = int(text)
        except ValueError:
            raise IncompatibleError(f"image output {output!r}: LAYER must be an integer") from None
    return "tokens", layer


@dataclass
class Counters:
    """What extraction did and cost (summed over calls)."""

    images: int = 0
    """Images computed (cache misses)."""
    texts: int = 0
    image_hits: int = 0
    text_hits: int = 0
    seconds: float = 0.0
    """Wall time inside ``images``/``texts`` (decoding, forward, store I/O): ``image_seconds + text_seconds``."""
    image_seconds: float = 0.0
    """Wall time inside ``images`` alone (what ``cost.images_per_s`` divides by)."""
    text_seconds: float = 0.0
    """Wall time inside ``texts`` alone (what ``cost.texts_per_s`` divides by)."""
    forward_seconds: float = 0.0
    max_abs_diff: float | None = None
    """``check_determinism``: largest per-sample difference between the two batch sizes."""


def _named_preprocessing(name: str | None, where: str) -> Any:
    """The named preprocessing ``name`` (None, or ``"model"``: the model's own transform, returns None);
    an unknown name is one line listing the known ones."""
    from .preprocessing import MODEL, preprocessing

    if name is None or name == MODEL:
        return None
    try:
        return preprocessing(name)
    except UnknownNameError as exc:
        raise UnknownNameError(f"{where}: {exc}") from None


def _said_of_named_input(encode: Callable[[Any], Any], preprocess: str, model: str) -> Callable[[Any], Any]:
    """``encode``, a failure on a named preprocessing's images (e.g. 224x224 for a model made for 336)
    said in one line naming both."""

    def run(pixels: Any) -> Any:
        try:
            return encode(pixels)
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise
            raise IncompatibleError(
                f"model {model!r} failed on the {'x'.join(map(str, tuple(pixels.shape)[1:]))} images of preprocessing "
                f"{preprocess!r} ({' '.join(str(exc).split())[:200]}); use the model's own (preprocess: model)") from None

    return run


def preprocess_fingerprint(encoder: Any, encoder_key: Mapping[str, Any]) -> str:
    """The encoder's ``preprocess_fingerprint``, else sha256 of the encoder key (see module docstring)."""
    own = getattr(encoder, "preprocess_fingerprint", None)
    if isinstance(own, str) and own:
        return own
    return "key:" + hashlib.sha256(canonical_json(dict(encoder_key)).encode()).hexdigest()


@dataclass
class Features:
    """Embeds images and texts with one encoder on one device (see the module docstring)."""

    encoder: Any
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int | str = 32
    """A positive int, or ``"auto"`` (largest that fits on CUDA, remembered; a default on CPU)."""
    progress: bool = False
    store: FeatureStore | None = None
    encoder_key: Mapping[str, Any] | None = None
    """What names the encoder in store keys; default: its class name and provenance."""
    num_workers: int | None = None
    """DataLoader worker processes; None: ``imageloader.auto_workers`` (0 for small extractions)."""
    shard_size: int = DEFAULT_SHARD_SIZE
    group: ProcessGroup = field(default_factory=ProcessGroup)
    check_determinism: bool = False
    channels_last: bool = False
    counters: Counters = field(default_factory=Counters)
    name: str = "model"
    """How errors name the model."""
    cache_dir: Any = None
    """The run's cache root (``--cache-dir``): where ``--batch-size auto`` remembers its answers."""
    workers_used: int | None = None
    """Decoding worker processes of the largest extraction so far (None: nothing was extracted)."""
    preprocess_used: list[str] = field(default_factory=list)
    """Image preprocessing of every ``images`` call so far, first use first: ``"model"`` (the model's own
    transform) or a named one's fingerprint (``harness:grain-v1``). Shared with :meth:`for_encoder`
    copies, so it covers every image feature of a task."""
    _resolved_batch: int | None = field(default=None, repr=False)
    _oom_warned: bool = field(default=False, repr=False)
    _checked: set[str] = field(default_factory=set, repr=False)

    # -- public API ------------------------------------------------------------------------
    def images(self, data: Split | datasets.Dataset, column: str, where: str = "dataset",
               output: str = "pooled", layer: int | None = None, preprocess: str | None = None) -> np.ndarray:
        """``(N, D)`` float32 image embeddings of ``data[column]`` in row order (``output="tokens@L"``, or
        ``"tokens"`` with ``layer``: ``(N, T, D)`` token-level outputs of block L via ``encode_image_tokens``).
        ``preprocess``: a named, model-independent transform of :mod:`harness.preprocessing` (``"grain"``)
        used instead of ``encoder.preprocess`` and keyed in the store by its fingerprint; None or
        ``"model"``: the model's own."""
        split = data if isinstance(data, Split) else Split(data)
        named = _named_preprocessing(preprocess, where)
        if column not in split.data.column_names:
            raise DataError(f"{where}: no column {column!r}; columns are {split.data.column_names}")
        output, layer = parse_output(output, layer)
        encode = self._image_function(output, layer)
        if named is not None:
            encode = _said_of_named_input(encode, named.name, self.name)
        name = "pooled" if output == "pooled" else f"tokens@{layer}"
        used = "model" if named is None else named.fingerprint
        if used not in self.preprocess_used:
            self.preprocess_used.append(used)
        fset = None
        if self.store is not None and split.identity is not None:
            fingerprint = (named.fingerprint if named is not None
                           else preprocess_fingerprint(self.encoder, self._encoder_key()))
            fset = self.store.open({"modality": "image", "encoder": self._encoder_key(), "preprocess": fingerprint,
                                    "dataset": split.identity, "column": column, "output": name, "dtype": self.dtype})
        ids = split.sample_ids() if fset is not None else [str(i) for i in range(len(split))]
        rows = ImageRows(split.data, column, named if named is not None else self.encoder.preprocess, where)
        what = "encode_image" if output == "pooled" else "encode_image_tokens"
        return self._extract(fset, ids, lambda chunks: self._image_chunks(rows, chunks, encode, what), "images")

    def texts(self, texts: Sequence[str], where: str = "texts") -> np.ndarray:
        """``(N, D)`` float32 text embeddings, in order (cached by encoder + sha256 of each text)."""
        texts = [str(t) for t in texts]
        fset = None
        if self.store is not None:
            fset = self.store.open({"modality": "text", "encoder": self._encoder_key(), "output": "pooled",
                                    "dtype": self.dtype})
        ids = [text_id(t) for t in texts]
        return self._extract(fset, ids, lambda chunks: self._text_chunks(texts, chunks), "texts")

    def for_encoder(self, encoder: Any, encoder_key: Mapping[str, Any], channels_last: bool = False) -> Features:
        """The same extraction settings, store, ranks and cost counters for another encoder, keyed
        in the store by ``encoder_key`` (a frozen tower's features are cached as its own)."""
        return replace(self, encoder=encoder, encoder_key=encoder_key if self.store is not None else None,
                       channels_last=channels_last,
                       name=str(encoder_key.get("name", "model")), _resolved_batch=None, _oom_warned=False,
                       _checked=set())

    @property
    def batch_size_used(self) -> int | None:
        """The batch size extraction ran with (``auto`` resolved); None if nothing was computed."""
        return self._resolved_batch if self.batch_size == "auto" else int(self.batch_size)

    # -- the store and the ranks -----------------------------------------------------------
    def _encoder_key(self) -> dict[str, Any]:
        if self.encoder_key is None:
            provenance = self.encoder.provenance()
            self.encoder_key = {"name": type(self.encoder).__qualname__, "fingerprint": provenance["fingerprint"],
                                "revision": provenance.get("revision")}
        return dict(self.encoder_key)

    def _extract(self, fset: FeatureSet | None, ids: list[str],
                 compute: Callable[[list[list[int]]], Iterator[tuple[list[int], np.ndarray]]], what: str) -> np.ndarray:
        """Look ``ids`` up, compute the missing ones (this rank's chunks), store and gather them."""
        start = time.perf_counter()
        group = self.group
        found, cached = np.zeros(len(ids), dtype=bool), None
        if group.main and fset is not None and not self.check_determinism:
            found, cached = fset.read(ids)
        missing = group.broadcast(np.flatnonzero(~found) if group.main else None)
        chunks = [missing[i:i + self.shard_size].tolist() for i in range(0, len(missing), self.shard_size)]
        done = []
        for positions, array in compute(chunks[group.rank::group.world_size]):
            if fset is not None:
                fset.write([ids[p] for p in positions], array,
                           {"batch_size": self.batch_size_used, "device": self.device, "rank": group.rank})
            done.append((positions, array))
        if group.world_size > 1:
            parts = group.gather(done)
            done = [item for part in parts for item in part] if parts is not None else []
        out = _assemble(len(ids), found, cached, done, self.encoder.embed_dim) if group.main else None
        out = group.broadcast(out)
        hits = int(found.sum()) if group.main else 0
        seconds = time.perf_counter() - start
        if what == "images":
            self.counters.image_hits += hits
            self.counters.image_seconds += seconds
        else:
            self.counters.text_hits += hits
            self.counters.text_seconds += seconds
        self.counters.seconds += seconds
        return out

    # -- computing -------------------------------------------------------------------------
    def _image_function(self, output: str, layer: int | None) -> Callable[[Any], Any]:
        if output == "pooled":
            encode = getattr(self.encoder, "encode_image", None)
            if encode is None:
                raise IncompatibleError(f"model {self.name!r} has no pooled image embeddings (encode_image)")
            return encode
        tokens = getattr(self.encoder, "encode_image_tokens", None)
        if tokens is None:
            raise IncompatibleError(f"model {self.name!r} has no token-level outputs (encode_image_tokens)")
        return lambda pixels: tokens(pixels, layer)

    def _image_chunks(self, rows: ImageRows, chunks: list[list[int]], encode: Callable[[Any], Any],
                      what: str) -> Iterator[tuple[list[int], np.ndarray]]:
        if not chunks:
            return
        from tqdm.auto import tqdm

        batch = self._batch_size(rows, chunks[0][0], encode)
        plan = [chunk[i:i + batch] for chunk in chunks for i in range(0, len(chunk), batch)]
        total = sum(len(c) for c in chunks)
        workers = self.num_workers if self.num_workers is not None else auto_workers(total, self.device)
        self.workers_used = max(self.workers_used or 0, workers)
        pin = self.device.startswith("cuda")
        loaded = batches(rows, plan, workers, pin)
        try:
            with tqdm(total=total, desc="images", unit="img", disable=not self.progress, leave=False) as bar:
                for chunk in chunks:
                    parts = []
                    for _ in range(math.ceil(len(chunk) / batch)):
                        pixels = next(loaded)
                        if isinstance(pixels, DecodeFailure):
                            raise DataError(pixels.message)
                        parts.append(self._run(encode, self._to_device(pixels, pin), what))
                        self.counters.images += len(pixels)
                        bar.update(len(pixels))
                    yield chunk, np.concatenate(parts)
        finally:
            loaded.close()

    def _text_chunks(self, texts: list[str], chunks: list[list[int]]) -> Iterator[tuple[list[int], np.ndarray]]:
        from tqdm.auto import tqdm

        batch = self.batch_size_used or (self.batch_size if isinstance(self.batch_size, int) else 32)
        with tqdm(total=sum(len(c) for c in chunks), desc="texts", disable=not self.progress, leave=False) as bar:
            for chunk in chunks:
                parts = []
                for i in range(0, len(chunk), batch):
                    strings = [texts[p] for p in chunk[i:i + batch]]
                    parts.append(self._run(self.encoder.encode_text, strings, "encode_text"))
                    self.counters.texts += len(strings)
                    bar.update(len(strings))
                yield chunk, np.concatenate(parts)

    def _to_device(self, pixels: Any, pin: bool) -> Any:
        import torch

        if isinstance(pixels, torch.Tensor):
            pixels = pixels.to(self.device, non_blocking=pin)
            if self.channels_last and pixels.ndim == 4:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
        return pixels

    def _run(self, encode: Callable[[Any], Any], batch: Any, what: str) -> np.ndarray:
        """One batch through ``encode`` (halved on CUDA out-of-memory); with ``check_determinism``,
        again in halves, recording the largest per-sample difference."""
        out = self._forward(encode, batch, what)
        if self.check_determinism and len(batch) > 1:
            half = (len(batch) + 1) // 2
            again = np.concatenate([self._forward(encode, batch[:half], what), self._forward(encode, batch[half:], what)])
            diff = float(np.max(np.abs(again.astype(np.float64) - out))) if out.size else 0.0
            self.counters.max_abs_diff = max(self.counters.max_abs_diff or 0.0, diff)
        return out

    def _forward(self, encode: Callable[[Any], Any], batch: Any, what: str) -> np.ndarray:
        """One batch through ``encode`` (the model's method ``what``; split on out-of-memory), its output
        checked: one row per input, finite, and ``(N, embed_dim)`` for pooled outputs."""
        start = time.perf_counter()

        def run(part: Any) -> np.ndarray:
            with forward_mode(self.device, self.dtype):
                out = encode(part)
            return self._checked_output(what, part, out.float().cpu().numpy())

        def join(parts: list[np.ndarray]) -> np.ndarray:
            if not self._oom_warned:
                log.warning("out of memory at batch size %d on %s: splitting batches", len(batch), self.device)
                self._oom_warned = True
            return np.concatenate(parts)

        try:
            return split_on_oom(run, batch, join)
        finally:
            self.counters.forward_seconds += time.perf_counter() - start

    def _checked_output(self, what: str, batch: Any, out: np.ndarray) -> np.ndarray:
        if out.ndim == 0 or len(out) != len(batch):
            raise PluginError(f"model {self.name!r}: {what} returned {out.shape[0] if out.ndim else 'a scalar'} "
                              f"rows for a batch of {len(batch)}")
        if what != "encode_image_tokens" and what not in self._checked:
            from .models import check_embed_dim

            check_embed_dim(self.name, self.encoder, out, what)
            self._checked.add(what)
        if not np.isfinite(out).all():
            raise PluginError(f"model {self.name!r}: {what} returned NaN or inf features")
        return out

    def _batch_size(self, rows: ImageRows, position: int, encode: Callable[[Any], Any]) -> int:
        if self.batch_size != "auto":
            return int(self.batch_size)
        if self._resolved_batch is None:
            from .batchsize import resolve_auto

            sample = rows[position]
            if isinstance(sample, DecodeFailure):
                raise DataError(sample.message)
            self._resolved_batch = resolve_auto(self, sample, encode)
        return self._resolved_batch


def _assemble(n: int, found: np.ndarray, cached: np.ndarray | None,
              done: list[tuple[list[int], np.ndarray]], embed_dim: int | None) -> np.ndarray:
    """Cached rows and computed chunks, in request order."""
    sample = cached if cached is not None else (done[0][1] if done else None)
    if sample is None:
        return np.zeros((0, embed_dim or 0), np.float32)
    out = cached if cached is not None else np.zeros((n, *sample.shape[1:]), np.float32)
    for positions, array in done:
        out[positions] = array
    return out
