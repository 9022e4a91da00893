"""Tiny generative models, built from configs and saved once per session (offline, seconds).

Import the fixtures into a test module (``from generative_fixtures import generative_models``).
Every model is saved with ``save_pretrained`` next to a tokenizer or processor trained here with
``tokenizers`` (a byte-level BPE, so word boundaries and leading spaces behave as in GPT-2/Llama),
and loaded back by the tests through harness names (``lm:DIR``, ``vlm:DIR``), i.e. through the
real loading path.

- ``llava``: LLaVA (tiny CLIP vision tower + tiny Llama), ``image_token_index`` inside the vocab,
  a processor with a chat template, and a tokenizer saved padding on the **right** (the loader
  must fix that to left);
- ``llava_plain``: the same weights and processor without a chat template;
- ``qwen2vl``: Qwen2-VL (M-RoPE positions, variable image token counts, a ChatML template that
  ends in a newline);
- ``blip``: a BLIP captioner (``BlipForConditionalGeneration``);
- ``llama``: a causal LM; ``t5``: a seq2seq LM (``T5ForConditionalGeneration``).

Weights are initialised with a large ``initializer_range`` so that outputs depend on the input
(default-initialised tiny models answer every prompt and image alike, which would make
batch-invariance tests vacuous).
"""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS = [
    "a red circle on a grey background", "two blue squares and a green star", "an orange heart",
    "what colour is the shape?", "what is shown in the picture?", "USER: ASSISTANT: the answer is red",
    "Question: colour? Answer: red", "a photo of a cat", "a picture of a kitten", "describe the image",
    "the quick brown fox jumps over the lazy dog", "yes no maybe one two three four five",
]
SPECIALS = ["<pad>", "<s>", "</s>", "<image>"]  # ids 0, 1, 2, 3
PAD, BOS, EOS, IMAGE = 0, 1, 2, 3
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | upper }}: {% if m['content'] is string %}{{ m['content'] }}"
    "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}"
    "{% endif %}{% endfor %}{% endif %} {% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}")
INIT = 0.4  # initializer_range: large enough that answers depend on prompts and images


def byte_level_bpe(specials: list[str]):  # noqa: ANN201
    """A byte-level BPE (a ``tokenizers.Tokenizer``) trained on CORPUS with ``specials``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS * 4, trainers.BpeTrainer(
        vocab_size=320, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    return tok


def tokenizer(template: str, padding_side: str = "right"):  # noqa: ANN201
    """A byte-level BPE trained on CORPUS, wrapped as a transformers fast tokenizer.

    ``template``: ``"bos"`` prefixes ``<s>`` (Llama-style), ``"eos"`` appends ``</s>`` (T5-style),
    ``"none"`` adds nothing (GPT-2-style)."""
    import transformers
    from tokenizers import processors

    tok = byte_level_bpe(SPECIALS)
    if template == "bos":
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", BOS)])
    elif template == "eos":
        tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", EOS)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", padding_side=padding_side,
        extra_special_tokens={"image_token": "<image>"})


def _llama_config(vocab: int):  # noqa: ANN202
    import transformers

    return transformers.LlamaConfig(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=BOS, eos_token_id=EOS, pad_token_id=PAD,
        initializer_range=INIT)


def build_llava(root: Path, chat_template: str | None = CHAT_TEMPLATE) -> Path:
    import torch
    import transformers

    tok = tokenizer("bos", padding_side="right")
    vision = transformers.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=32, patch_size=8, initializer_range=INIT)
    config = transformers.LlavaConfig(vision_config=vision, text_config=_llama_config(len(tok)), image_token_index=IMAGE,
                                      projector_hidden_act="gelu", vision_feature_select_strategy="default",
                                      vision_feature_layer=-1)
    torch.manual_seed(0)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    image_processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = transformers.LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=8,
                                            vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                            chat_template=chat_template)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                 "<|image_pad|>", "<|video_pad|>"]  # ids 0..6
QWEN_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build_qwen2vl(root: Path) -> Path:
    import torch
    import transformers

    tok = byte_level_bpe(QWEN_SPECIALS)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"})
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512, initializer_range=INIT,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                eos_token_id=2, pad_token_id=0, bos_token_id=None)
    vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, patch_size=14, spatial_merge_size=2,
                  temporal_patch_size=2, initializer_range=INIT)
    config = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=5, video_token_id=6,
                                        vision_start_token_id=3, vision_end_token_id=4)
    torch.manual_seed(0)
    model = transformers.Qwen2VLForConditionalGeneration(config).eval()
    processor = transformers.Qwen2VLProcessor(
        image_processor=transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=56 * 56 * 4),
        tokenizer=tokenizer, video_processor=transformers.Qwen2VLVideoProcessor(), chat_template=QWEN_TEMPLATE)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


def build_blip(root: Path) -> Path:
    import torch
    import transformers

    tok = tokenizer("none")
    text = transformers.BlipTextConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        max_position_embeddings=128, bos_token_id=BOS, eos_token_id=EOS, sep_token_id=EOS, pad_token_id=PAD,
        encoder_hidden_size=32, initializer_range=INIT)
    vision = transformers.BlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=32, patch_size=8, initializer_range=INIT)
    config = transformers.BlipConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=32)
    torch.manual_seed(0)
    model = transformers.BlipForConditionalGeneration(config).eval()
    processor = transformers.BlipProcessor(image_processor=transformers.BlipImageProcessor(
        size={"height": 32, "width": 32}), tokenizer=tok)
    model.save_pretrained(root)
    processor.save_pretrained(root)
    return root


def build_llama(root: Path, padding_side: str = "right") -> Path:
    import torch
    import transformers

    tok = tokenizer("bos", padding_side=padding_side)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(_llama_config(len(tok))).eval()
    model.save_pretrained(root)
    tok.save_pretrained(root)
    return root


def build_t5(root: Path) -> Path:
    import torch
    import transformers

    tok = tokenizer("eos")
    config = transformers.T5Config(vocab_size=len(tok), d_model=32, d_ff=64, d_kv=16, num_layers=2, num_heads=2,
                                   pad_token_id=PAD, eos_token_id=EOS, decoder_start_token_id=PAD,
                                   initializer_factor=1.0)
    torch.manual_seed(0)
    model = transformers.T5ForConditionalGeneration(config).eval()
    model.save_pretrained(root)
    tok.save_pretrained(root)
    return root


@pytest.fixture(scope="session")
def generative_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``{"llava", "llava_plain", "qwen2vl", "blip", "llama", "t5"}`` -> save_pretrained directories."""
    from harness import ensure_torchvision

    ensure_torchvision()
    root = tmp_path_factory.mktemp("generative")
    return {"llava": build_llava(root / "llava"), "llava_plain": build_llava(root / "llava-plain", None),
            "qwen2vl": build_qwen2vl(root / "qwen2vl"), "blip": build_blip(root / "blip"),
            "llama": build_llama(root / "llama"), "t5": build_t5(root / "t5")}


def images(n: int, size: int = 32) -> list:
    """``n`` distinct seeded noise images."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(n)]
