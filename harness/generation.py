"""The generation engine: what task kinds call for ``generate`` and ``loglikelihood`` requests.

Task kinds call ``ctx.generate(requests)`` / ``ctx.loglikelihood(requests)`` and get answers in
request order; batching, precision, the response store and data parallelism happen here, once:

- **Lookup.** Every request is keyed (:func:`harness.responsestore.request_key`: prompt, image
  pixels, settings) and looked up in the model's response set (model identity, chat template,
  dtype); identical requests are computed once.
- **Batches.** Missing requests are grouped by settings (requests of one batch decode alike),
  sorted by prompt length (longest first: similar lengths pad little, and an out-of-memory error
  shows at once), and cut into batches of ``batch_size``; each request keeps its own images. A
  batch that runs out of CUDA memory is split. Decoder-only models pad on the left (the model
  plugins assert it), so a request's answer does not depend on its batch (tested: batch sizes 1
  and 8 give the same greedy outputs).
- **Store.** Each batch's responses are appended to the store as soon as they are computed, so a
  run killed mid-way (SIGKILL included) resumes with the requests it had not answered.
- **Ranks.** Under torchrun the missing batches are shared round-robin among ranks; rank 0
  gathers them and every rank gets all answers.
- **Checks.** A model must return one answer per request, of the protocol's type (text for
  ``generate``; a :class:`~harness.models.Loglikelihood` -- a sum of log-probabilities <= 0 -- for
  ``loglikelihood``); anything else is one line naming the model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterator, Sequence

from .errors import PluginError, blamed
from .execution import forward_mode, is_out_of_memory, split_on_oom
from .models import Generation, GenerationRequest, Loglikelihood, LoglikelihoodRequest
from .processgroup import ProcessGroup
from .responsestore import ResponseSet, request_key

#: Batch size of ``--batch-size auto`` for generation (auto-tuning is for image extraction).
DEFAULT_BATCH = 8


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """``text`` up to the first occurrence of any stop string (models should already cut; this makes sure)."""
    ends = [text.find(s) for s in stop if s and s in text]
    return text[:min(ends)] if ends else text


@dataclass
class GenerationCounters:
    """What the engine did and cost (summed over calls; gathered over ranks)."""

    requests: int = 0
    """Requests computed (store misses)."""
    request_hits: int = 0
    tokens: int = 0
    """Generated tokens (as the model counts them) of computed requests."""
    seconds: float = 0.0


@dataclass
class Generations:
    """Answers ``generate`` and ``loglikelihood`` requests with one model (see the module docstring)."""

    model: Any
    name: str = "model"
    device: str = "cpu"
    dtype: str = "fp32"
    batch_size: int | str = DEFAULT_BATCH
    progress: bool = False
    store: ResponseSet | None = None
    group: ProcessGroup = field(default_factory=ProcessGroup)
    counters: GenerationCounters = field(default_factory=GenerationCounters)

    # -- public API ------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerationRequest], where: str = "task") -> list[Generation]:
        """One :class:`Generation` per request, in request order."""
        self._check_capability("generate", where)
        requests = list(requests)
        for request in requests:
            if not isinstance(request, GenerationRequest):
                raise PluginError(f"{where}: generate takes GenerationRequest objects, got {type(request).__name__}")
        keys = [request_key("generate", {"prompt": r.prompt, "settings": r.settings()}, r.images) for r in requests]
        answers = self._answer(requests, keys, "generate", lambda r: json.dumps(r.settings(), sort_keys=True),
                               lambda r: len(r.prompt))
        return [Generation(text=cut_at_stop(a["text"], r.stop), n_tokens=a.get("n_tokens"), details=a.get("details"))
                for r, a in zip(requests, answers)]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest], where: str = "task") -> list[Loglikelihood]:
        """One :class:`Loglikelihood` (sum of the continuation's token log-probabilities, <= 0) per request."""
        self._check_capability("loglikelihood", where)
        requests = list(requests)
        for request in requests:
            if not isinstance(request, LoglikelihoodRequest):
                raise PluginError(f"{where}: loglikelihood takes LoglikelihoodRequest objects, "
                                  f"got {type(request).__name__}")
        keys = [request_key("loglikelihood", {"context": r.context, "continuation": r.continuation}, r.images)
                for r in requests]
        answers = self._answer(requests, keys, "loglikelihood", lambda r: "",
                               lambda r: len(r.context) + len(r.continuation))
        return [Loglikelihood(logprob=a["logprob"], n_tokens=a["n_tokens"], greedy=a["greedy"]) for a in answers]

    # -- the engine ------------------------------------------------------------------------
    def _check_capability(self, method: str, where: str) -> None:
        if not callable(getattr(self.model, method, None)):
            raise PluginError(f"{where}: model {self.name!r} has no {method}() (capability {method!r})")

    def _answer(self, requests: list[Any], keys: list[str], method: str, settings: Callable[[Any], str],
                length: Callable[[Any], int]) -> list[dict[str, Any]]:
        """Stored or computed responses (as dicts) for ``requests``, in order."""
        start = time.perf_counter()
        group = self.group
        found = self.store.read(keys) if (self.store is not None and group.main) else {}
        missing = group.broadcast(sorted({k for k in keys if k not in found}) if group.main else None)
        first = {}
        for position, key in enumerate(keys):
            first.setdefault(key, position)
        batches = self._plan([first[k] for k in missing], requests, settings, length)
        computed: dict[str, dict[str, Any]] = {}
        for batch in self._progress(batches[group.rank::group.world_size], method):
            answers = self._run(method, [requests[p] for p in batch])
            done = [(keys[p], answer) for p, answer in zip(batch, answers)]
            if self.store is not None:
                self.store.write(done)
            computed.update(done)
            self.counters.requests += len(batch)
            self.counters.tokens += sum(int(a.get("n_tokens") or 0) for a in answers) if method == "generate" else 0
        if group.world_size > 1:
            parts = group.gather(computed)
            computed = {k: v for part in parts for k, v in part.items()} if parts is not None else {}
        out = [found[k] if k in found else computed[k] for k in keys] if group.main else None
        out = group.broadcast(out)
        self.counters.request_hits += sum(1 for k in keys if k in found) if group.main else 0
        self.counters.seconds += time.perf_counter() - start
        return out

    def _plan(self, positions: list[int], requests: list[Any], settings: Callable[[Any], str],
              length: Callable[[Any], int]) -> list[list[int]]:
        """Batches of positions: grouped by settings, longest prompt first, ``batch_size`` each."""
        size = self.batch_size if isinstance(self.batch_size, int) else DEFAULT_BATCH
        groups: dict[str, list[int]] = {}
        for position in positions:
            groups.setdefault(settings(requests[position]), []).append(position)
        batches = []
        for _, members in sorted(groups.items()):
            members.sort(key=lambda p: (-length(requests[p]), p))
            batches += [members[i:i + size] for i in range(0, len(members), size)]
        return batches

    def _progress(self, batches: list[list[int]], method: str) -> Iterator[list[int]]:
        from tqdm.auto import tqdm

        with tqdm(total=sum(len(b) for b in batches), desc=method, unit="req", disable=not self.progress,
                  leave=False) as bar:
            for batch in batches:
                yield batch
                bar.update(len(batch))

    def _run(self, method: str, batch: list[Any]) -> list[dict[str, Any]]:
        """One batch through the model's ``method`` (split on out-of-memory), answers checked."""
        call = getattr(self.model, method)

        def run(part: list[Any]) -> list[dict[str, Any]]:
            with forward_mode(self.device, self.dtype):
                try:
                    answers = call(part)
                except Exception as exc:
                    if is_out_of_memory(exc):
                        raise  # split_on_oom halves the batch
                    with blamed(f"model {self.name!r}: {method}"):
                        raise
            return self._checked(method, part, answers)

        return split_on_oom(run, batch, lambda parts: [a for part in parts for a in part])

    def _checked(self, method: str, batch: list[Any], answers: Any) -> list[dict[str, Any]]:
        try:
            answers = list(answers)
        except TypeError:
            raise PluginError(f"model {self.name!r}: {method} returned {type(answers).__name__}, "
                              "expected a list") from None
        if len(answers) != len(batch):
            raise PluginError(f"model {self.name!r}: {method} returned {len(answers)} answers for {len(batch)} requests")
        expected = Generation if method == "generate" else Loglikelihood
        out = []
        for answer in answers:
            if not isinstance(answer, expected) or (method == "generate" and not isinstance(answer.text, str)):
                raise PluginError(f"model {self.name!r}: {method} returned {type(answer).__name__}; "
                                  f"expected {expected.__name__} objects")
            entry = {f.name: getattr(answer, f.name) for f in fields(answer)}
            try:
                json.dumps(entry, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise PluginError(f"model {self.name!r}: {method} returned an answer that is not JSON ({exc})") from None
            out.append(entry)
        return out
