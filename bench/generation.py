"""Generation: the harness engine vs a direct ``model.generate`` loop, same model, requests, batch size.

    .venv/bin/python bench/generation.py [--size tiny|small|llava7b] [--requests 64] [--batch-size 8]
                                         [--max-new-tokens 16] [--device cpu] [--dtype fp32] [--repeats 3]

Builds a LLaVA-shaped model with random weights (``tiny``: a check of the plumbing; ``small``: a
CPU-sized one, 256-wide Llama and CLIP towers; ``llava7b``: LLaVA-1.5-7B's shapes, CLIP ViT-L/14-336
+ Llama-2-7B, for a GPU) and a byte-level BPE tokenizer trained here, saves it under
``$HARNESS_CACHE_DIR/bench-models`` once, and answers the same questions about random images:

- ``raw``: transformers directly, as its model cards show -- the processor's chat template, the
  processor (BOS added, left padding), ``model.generate`` greedy, batches in request order, decode;
- ``harness``: the model loaded through its harness name (``vlm:DIR``) and answered by the
  generation engine (:class:`harness.generation.Generations`: batching by settings and length,
  checks), the response store off, so every request is computed.

Prints both wall times (best of ``--repeats``), questions/s and generated tokens/s, the ratio
harness / raw (goal <= 1.10), and how many answers are identical (greedy, same model: all of them).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SIZES = {
    "tiny": {"text": (32, 64, 2, 2, 512), "vision": (32, 64, 2, 2, 32, 8)},
    "small": {"text": (256, 768, 4, 4, 2048), "vision": (256, 768, 4, 4, 224, 32)},
    "llava7b": {"text": (4096, 11008, 32, 32, 32064), "vision": (1024, 4096, 24, 16, 336, 14)},
}
CORPUS = ["what colour is the shape?", "how many objects are there?", "is there a red circle?",
          "what shape is in the middle of the picture?", "describe the image in one word",
          "USER: ASSISTANT: red green blue yellow circle square star heart one two three yes no"]
TEMPLATE = ("{% for m in messages %}{{ m['role'] | upper }}: {% for c in m['content'] %}{% if c['type'] == 'image' %}"
            "<image>\n{% else %}{{ c['text'] }}{% endif %}{% endfor %} {% endfor %}"
            "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def build(root: Path, size: str, device: str) -> Path:
    """Save a random LLaVA of ``size`` with a processor under ``root`` (once)."""
    if (root / "config.json").exists():
        return root
    import torch
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    hidden, inter, layers, heads, vocab = SIZES[size]["text"]
    v_hidden, v_inter, v_layers, v_heads, image, patch = SIZES[size]["vision"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 8, trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "<s>", "</s>", "<image>"],
                                                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                            show_progress=False))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                                     pad_token="<pad>", padding_side="left",
                                                     extra_special_tokens={"image_token": "<image>"})
    text = transformers.LlamaConfig(vocab_size=max(vocab, len(tokenizer)), hidden_size=hidden, intermediate_size=inter,
                                    num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                                    max_position_embeddings=4096, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    vision = transformers.CLIPVisionConfig(hidden_size=v_hidden, intermediate_size=v_inter, num_hidden_layers=v_layers,
                                           num_attention_heads=v_heads, image_size=image, patch_size=patch)
    config = transformers.LlavaConfig(vision_config=vision, text_config=text, image_token_index=3,
                                      vision_feature_select_strategy="default", vision_feature_layer=-2)
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlavaForConditionalGeneration(config).eval()
    processor = transformers.LlavaProcessor(
        image_processor=transformers.CLIPImageProcessor(size={"shortest_edge": image},
                                                        crop_size={"height": image, "width": image}),
        tokenizer=tokenizer, patch_size=patch, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=TEMPLATE)
    root.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


def requests(n: int, image_size: int, max_new_tokens: int) -> list:
    from PIL import Image

    from harness import GenerationRequest

    rng = random.Random(0)
    out = []
    for i in range(n):
        image = Image.new("RGB", (image_size, image_size), tuple(rng.randrange(256) for _ in range(3)))
        out.append(GenerationRequest(CORPUS[i % 5] + " " * (i % 7), (image,), max_new_tokens=max_new_tokens))
    return out


def load_raw(root: Path, device: str) -> tuple:
    import transformers

    processor = transformers.AutoProcessor.from_pretrained(root)
    processor.tokenizer.padding_side = "left"
    return processor, transformers.AutoModelForImageTextToText.from_pretrained(root).to(device).eval()


def raw_loop(loaded: tuple, reqs: list, batch: int, device: str, dtype: str) -> tuple[list[str], int]:
    """transformers directly: (answers in request order, generated tokens)."""
    import torch

    from harness import autocast

    processor, model = loaded
    answers, tokens = [], 0
    for start in range(0, len(reqs), batch):
        part = reqs[start:start + batch]
        texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                             {"type": "text", "text": r.prompt}]}],
                                               add_generation_prompt=True) for r in part]
        inputs = processor(text=texts, images=[r.images[0] for r in part], return_tensors="pt",
                           padding=True).to(device)
        with torch.inference_mode(), autocast(device, dtype):
            out = model.generate(**inputs, max_new_tokens=part[0].max_new_tokens, do_sample=False,
                                 pad_token_id=processor.tokenizer.pad_token_id)
        for row in out[:, inputs["input_ids"].shape[1]:]:
            eos = (row == processor.tokenizer.eos_token_id).nonzero()
            kept = row[:int(eos[0])] if len(eos) else row
            tokens += len(kept)
            answers.append(processor.tokenizer.decode(kept, skip_special_tokens=True))
    return answers, tokens


def load_harness(root: Path, device: str, dtype: str) -> tuple:
    from harness import ExecutionConfig, LoadContext
    from harness.models import build_model
    from harness.pluginmanager import get_plugin_manager
    from harness.registry import collect

    spec, _ = collect(get_plugin_manager()).resolve_model(f"vlm:{root}")
    return spec.name, build_model(spec, LoadContext(ExecutionConfig(device=device, dtype=dtype, cache=False)))


def harness_engine(loaded: tuple, reqs: list, batch: int, device: str, dtype: str) -> tuple[list[str], int]:
    """The generation engine (store off: every request computed)."""
    from harness.generation import Generations

    name, model = loaded
    engine = Generations(model, name, device, dtype, batch)
    answers = engine.generate(reqs)
    return [a.text for a in answers], engine.counters.tokens


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    import torch

    from harness import ensure_torchvision

    ensure_torchvision()  # before transformers imports torchvision (see harness/torchcompat.py)

    root = Path(os.environ.get("HARNESS_CACHE_DIR", "/tmp/harness-bench")) / "bench-models" / f"llava-{args.size}"
    start = time.perf_counter()
    build(root, args.size, args.device)
    print(f"model llava-{args.size} at {root} ({time.perf_counter() - start:.1f} s to build or find), "
          f"{args.requests} requests, batch {args.batch_size}, {args.max_new_tokens} new tokens, {args.device} "
          f"{args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    reqs = requests(args.requests, SIZES[args.size]["vision"][4], args.max_new_tokens)
    loaded = {"raw": load_raw(root, args.device), "harness": load_harness(root, args.device, args.dtype)}
    runs = {"raw": raw_loop, "harness": harness_engine}
    best: dict[str, float] = {"raw": float("inf"), "harness": float("inf")}
    outputs: dict[str, tuple[list[str], int]] = {}
    for _ in range(args.repeats):  # alternating, so drifts of a shared machine hit both alike
        for name in ("raw", "harness"):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            t = time.perf_counter()
            outputs[name] = runs[name](loaded[name], reqs, args.batch_size, args.device, args.dtype)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best[name] = min(best[name], time.perf_counter() - t)
    for name in ("raw", "harness"):
        tokens = outputs[name][1]
        print(f"{name:8s} {best[name]:8.2f} s  {args.requests / best[name]:8.2f} questions/s  "
              f"{tokens / best[name]:9.1f} tokens/s (best of {args.repeats}; models loaded before timing)")
    results = {name: (best[name], outputs[name]) for name in best}
    same = sum(a == b for a, b in zip(results["raw"][1][0], results["harness"][1][0]))
    ratio = results["harness"][0] / results["raw"][0]
    print(f"harness / raw wall time: {ratio:.3f} (goal <= 1.10); identical answers: {same}/{args.requests}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
