"""Benchmark: caption feature extraction with an 8B decoder LM through the harness, against the
model's pure-forward ceiling -- measured side by side in one process, on the same model and texts.

    .venv/bin/python bench/text_extraction.py [--texts 4096] [--batch-size 256] [--device auto]
        [--dtype bf16|fp32|fp16] [--repeats 3] [--tiny]

Model: Llama-3-8B's architecture (``LlamaConfig``: hidden 4096, 32 layers, 32 heads, 8 key-value
heads, MLP 14336, vocabulary 128256; 7.5B parameters without the LM head) with random weights,
built directly in the ``--dtype`` on the device (no float32 copy on the host). ``--tiny``: a
2-layer, 64-wide model of the same family, for testing on a CPU.

Texts: ``--texts`` synthetic captions of 20-60 words (ShareLock's captions are 20-60 tokens),
every word one token of a word-level tokenizer built in memory (Llama-3's own tokenizer is not
available offline); the batches are in the given order, so each is padded to its longest caption.

Measured (the median of ``--repeats`` rounds; a ratio is the median of per-round ratios):

* ``harness``: ``Features.texts`` (no feature store) with ``harness_lm``'s ``LanguageModelEncoder``
  -- the harness's own decoder path: tokenise with left padding, position ids over attended
  tokens, forward, last-token pooling, float32 copy to the host, batch after batch;
* ``ceiling``: the forward pass alone over the same batches, tokenised beforehand and already on
  the device, with the same position ids and last-token pooling, no host copies.

Each is reported as texts/s and tokens/s (caption tokens, padding not counted), with
``harness / ceiling`` throughput, and the time the harness would take for ShareLock's 563k captions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from harness.torchcompat import ensure_torchvision  # noqa: E402

ensure_torchvision()

import torch  # noqa: E402
import transformers  # noqa: E402

from harness.execution import forward_mode  # noqa: E402
from harness.features import Features  # noqa: E402
from harness_lm.language import LanguageModelEncoder, recipe_for  # noqa: E402
from harness_lm.pooling import last_token, position_ids  # noqa: E402

LLAMA3_8B = dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
                 rope_theta=500000.0, rms_norm_eps=1e-5)
TINY = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
SHARELOCK_PAIRS = 563_000
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
WORDS = ("a photo of the man woman dog cat car street red blue green small large old young two three "
         "sitting standing on in with next to near under front people tree building water sky white black "
         "table food plate child playing field wooden view city night sign close up group person road").split()


def captions(n: int, seed: int = 0) -> list[str]:
    """``n`` captions of 20-60 words drawn from :data:`WORDS` (seeded)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(20, 61, (n,), generator=generator).tolist()
    return [" ".join(WORDS[i] for i in torch.randint(len(WORDS), (k,), generator=generator).tolist()) for k in lengths]


def tokenizer() -> transformers.PreTrainedTokenizerFast:
    """A word-level fast tokenizer over :data:`WORDS`, padding on the left (as ``harness_lm`` sets for decoders)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {word: i for i, word in enumerate(["<unk>", "<eos>", *dict.fromkeys(WORDS)])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return transformers.PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", eos_token="<eos>",
                                                pad_token="<eos>", padding_side="left")


def build_model(config: transformers.LlamaConfig, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """``LlamaModel`` with random weights, allocated and initialised on ``device`` in ``dtype``."""
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.AutoModel.from_config(config, dtype=dtype)
    return model.eval().requires_grad_(False)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def harness(features: Features, texts: list[str]) -> float:
    """Seconds for ``Features.texts`` over ``texts``."""
    sync(features.device)
    start = time.perf_counter()
    features.texts(texts)
    sync(features.device)
    return time.perf_counter() - start


def ceiling(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], features: Features) -> float:
    """Seconds for the forward pass and last-token pooling over pre-tokenised batches on the device."""
    sync(features.device)
    start = time.perf_counter()
    with forward_mode(features.device, features.dtype):  # no autograd and autocast exactly as the harness applies them
        for batch in batches:
            states = model(**batch, return_dict=True).last_hidden_state
            last_token(states, batch["attention_mask"])
    sync(features.device)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=4096)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default=None, choices=sorted(DTYPES), help="default: bf16 on CUDA, fp32 on CPU")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide Llama (CPU testing)")
    args = parser.parse_args()
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = args.dtype or ("bf16" if device.startswith("cuda") else "fp32")
    config = transformers.LlamaConfig(**(TINY if args.tiny else LLAMA3_8B))
    start = time.perf_counter()
    model = build_model(config, device, DTYPES[dtype])
    build_s = time.perf_counter() - start
    tok = tokenizer()
    encoder = LanguageModelEncoder(model, tok, recipe_for(config, {}, None, tok), None, device)
    features = Features(encoder, device=device, dtype=dtype, batch_size=args.batch_size, store=None)
    texts = captions(args.texts)
    batches = []
    for i in range(0, len(texts), args.batch_size):
        encoded = tok(texts[i:i + args.batch_size], padding=True, return_tensors="pt")
        mask = encoded["attention_mask"].to(device)
        batches.append({"input_ids": encoded["input_ids"].to(device), "attention_mask": mask,
                        "position_ids": position_ids(mask)})
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    padded = sum(b["attention_mask"].numel() for b in batches)
    harness(features, texts[:args.batch_size])  # warm-up, untimed: kernels, allocator
    ceiling(model, batches[:1], features)
    times: dict[str, list[float]] = {"harness": [], "ceiling": []}
    for _ in range(args.repeats):  # back to back: drift between rounds exceeds drift within one
        times["ceiling"].append(ceiling(model, batches, features))
        times["harness"].append(harness(features, texts))
    gpu = f" ({torch.cuda.get_device_name(device)})" if device.startswith("cuda") else ""
    params = sum(p.numel() for p in model.parameters())
    print(f"LlamaModel {'tiny' if args.tiny else 'Llama-3-8B architecture'}, random weights, {params:,} "
          f"parameters, built in {build_s:.1f} s on {device}{gpu} ({dtype}, attention "
          f"{model.config._attn_implementation}); torch {torch.__version__}; {len(texts)} captions, "
          f"{tokens / len(texts):.1f} tokens each on average ({tokens:,} tokens, {padded:,} with padding), "
          f"batch {args.batch_size}, {args.repeats} rounds")
    for name, values in times.items():
        seconds = statistics.median(values)
        print(f"  {name:8s} {seconds:8.3f} s  {len(texts) / seconds:9.1f} texts/s  {tokens / seconds:11.0f} tokens/s"
              f"  (rounds: {', '.join(f'{v:.3f}' for v in values)})")
    ratios = [c / h for c, h in zip(times["ceiling"], times["harness"])]
    print(f"harness / ceiling throughput {statistics.median(ratios):.3f}  "
          f"(rounds: {', '.join(f'{r:.3f}' for r in ratios)})")
    rate = len(texts) / statistics.median(times["harness"])
    print(f"ShareLock's {SHARELOCK_PAIRS:,} captions at the harness rate: {SHARELOCK_PAIRS / rate / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
