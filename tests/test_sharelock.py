"""ShareLock: reference defaults, head shapes and BatchNorm eval mode, the loss against a hand
computation, the trainer (seeding, accumulation, validation), and both checkpoint formats
(harness folders; official Lightning .ckpt read safely, including OmegaConf hyper-parameters)."""

from __future__ import annotations

import json
import math
import pickle
import random
import sys
import types
from pathlib import Path

import numpy as np
import pytest


torch = pytest.importorskip("torch")
from harness import ModelLoadError, UsageError  # noqa: E402
from harness_sharelock import checkpoint, lightning  # noqa: E402
from harness_sharelock.config import ShareLockConfig  # noqa: E402
from harness_sharelock.model import ShareLock, clip_loss  # noqa: E402
from harness_sharelock.trainer import split_indices, train  # noqa: E402

SMALL = ShareLockConfig(language_hidden_size=32, language_num_layers=3, max_steps=30, lr_warmup_steps=3,
                        batch_size=16, accumulate_grad_batches=1, val_split_num=0)

#: The official configs/default_config.yaml and train.py values (JonaRuthardt/ShareLock @ e7b464d).
OFFICIAL = {"seed": 42, "data": {"val_split_num": 50000},
            "model": {"embedding_space_dim": 768, "vision_encoder": "dinov2_vitl14",
                      "vision_projector": {"hidden_size": 4096, "num_layers": 0, "normalize": True},
                      "language_encoder": "meta-llama/Meta-Llama-3-8B",
                      "language_projector": {"hidden_size": 4096, "num_layers": 4, "normalize": True}},
            "training": {"max_steps": 5000, "lr_warmup_steps": 150, "learning_rate": 0.001, "lr_schedule": "cosine",
                         "batch_size": 1024, "accumulate_grad_batches": 16, "max_grad_norm": 1,
                         "weight_decay": 0.0001, "early_stopping": True, "early_stopping_patience": 50},
            "logging": {"val_check_interval": 500}}


def _aligned(n: int = 96, dv: int = 12, dl: int = 20, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pairs where the caption feature is a fixed linear map of the image feature, plus noise."""
    rng = np.random.default_rng(seed)
    vision = rng.normal(size=(n, dv)).astype(np.float32)
    language = (vision @ rng.normal(size=(dv, dl)) + 0.05 * rng.normal(size=(n, dl))).astype(np.float32)
    return vision, language


# -- config ---------------------------------------------------------------------------------------
def test_defaults_are_the_reference_values() -> None:
    c = ShareLockConfig()
    assert (c.language_hidden_size, c.language_num_layers, c.vision_num_layers, c.dropout) == (4096, 4, 0, 0.2)
    assert c.logit_scale == pytest.approx(1 / 0.07, rel=1e-4) and c.log_logit_scale == 2.6592
    assert (c.learning_rate, c.weight_decay, c.lr_schedule, c.lr_warmup_steps, c.max_steps) == (1e-3, 1e-4, "cosine", 150, 5000)
    assert (c.batch_size, c.accumulate_grad_batches, c.max_grad_norm) == (1024, 16, 1.0)
    assert (c.val_split_num, c.seed, c.normalize, c.precision) == (50000, 42, True, "32-true")
    assert lightning.config_from(OFFICIAL, "official") == c  # the official YAML maps onto the defaults


def test_config_rejects_unknown_and_bad_values() -> None:
    with pytest.raises(UsageError, match="unknown field.*widht"):
        ShareLockConfig.from_dict({"widht": 3})
    with pytest.raises(UsageError, match="dropout"):
        ShareLockConfig(dropout=1.5)
    with pytest.raises(UsageError, match="max_steps must be int, got 2.5"):
        ShareLockConfig.from_dict({"max_steps": 2.5})
    assert ShareLockConfig.from_dict({"learning_rate": "1e-3", "max_grad_norm": 1}).max_grad_norm == 1.0
    assert SMALL.replace(max_steps=7).max_steps == 7
    with pytest.raises(UsageError, match="precision must be one of 32-true, bf16-mixed, tf32"):
        ShareLockConfig(precision="fp8")


def test_trainer_config_is_flat_with_one_seed(capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import fields

    from harness.cli import main
    from harness.schema import checked_params
    from harness_sharelock.job import DATA_KEYS, config_schema, head_config

    schema = config_schema()
    keys = set(schema["properties"])
    assert keys == {*DATA_KEYS, *(f.name for f in fields(ShareLockConfig))} - {"seed"}  # the seed is --seed
    assert schema["additionalProperties"] is False
    config = checked_params(schema, {"vision": "v", "language": "l", "pairs": "p", "max_steps": 7, "batch_size": 8},
                            "harness train sharelock", field="config")
    assert (config["split"], config["pairs_config"], config["lightning"], config["learning_rate"]) == ("train", {}, False, 1e-3)
    assert head_config(config, seed=5) == ShareLockConfig(max_steps=7, batch_size=8, seed=5)
    assert head_config({"vision": "v"}, seed=42) == ShareLockConfig()  # --seed 42: the reference
    with pytest.raises(SystemExit) as exit_:  # the core builds the command from the schema without a clash
        main(["train", "sharelock", "--help"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert "--max-steps" in printed and "--lightning" in printed and "--pairs-config" in printed


def test_folder_files_are_what_save_writes(tmp_path: Path) -> None:
    model = train(SMALL.replace(max_steps=2), *_aligned(), progress=False).model
    meta = {"vision": {"name": "v"}, "language": {"name": "l"}}
    files = checkpoint.files(model, meta)
    assert list(files) == [checkpoint.WEIGHTS, checkpoint.META]  # weights first: a sharelock.json means complete
    checkpoint.save(tmp_path, model, meta)
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
    (tmp_path / "sharelock.ckpt").write_bytes(lightning.dumps(model, meta, global_step=2))
    loaded, doc = lightning.load(tmp_path / "sharelock.ckpt")
    assert doc == meta and torch.load(tmp_path / "sharelock.ckpt", weights_only=True)["global_step"] == 2


# -- model ----------------------------------------------------------------------------------------
def test_head_shapes_and_official_parameter_names() -> None:
    model = ShareLock(ShareLockConfig(language_hidden_size=64), vision_dim=24, language_dim=40)
    layers = model.language_projector.projection
    kinds = [type(m).__name__ for m in layers]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Dropout"] * 3 + ["Linear"]
    assert [m.p for m in layers if isinstance(m, torch.nn.Dropout)] == [0.2] * 3
    assert (layers[0].in_features, layers[0].out_features, layers[12].out_features) == (40, 64, 24)
    assert isinstance(model.vision_projector.projection, torch.nn.Identity) and model.embed_dim == 24
    assert "language_projector.projection.12.weight" in model.state_dict()
    assert not [k for k in model.state_dict() if k.startswith("vision_projector")]
    image, text = model.eval()(torch.randn(5, 24), torch.randn(5, 40))
    assert image.shape == text.shape == (5, 24)
    torch.testing.assert_close(image.norm(dim=1), torch.ones(5))
    torch.testing.assert_close(text.norm(dim=1), torch.ones(5))
    both = ShareLock(ShareLockConfig(vision_num_layers=2, vision_hidden_size=8, language_hidden_size=8,
                                     embedding_space_dim=6), 24, 40)
    assert both.embed_dim == 6 and both(torch.randn(3, 24), torch.randn(3, 40))[0].shape == (3, 6)


def test_batchnorm_uses_running_statistics_in_eval_mode() -> None:
    model = ShareLock(SMALL, 12, 20)
    with pytest.raises(ValueError):  # training-mode BatchNorm cannot normalise a single sample
        model.train().language_projector(torch.randn(1, 20))
    model.eval()
    batch = torch.randn(6, 20)
    alone = torch.cat([model.language_projector(row[None]) for row in batch])
    torch.testing.assert_close(model.language_projector(batch), alone)  # no dependence on the batch
    trained = train(SMALL.replace(max_steps=2), *_aligned(), progress=False).model
    assert not trained.training and not any(m.training for m in trained.modules())


# -- loss -----------------------------------------------------------------------------------------
def test_loss_against_a_hand_computation() -> None:
    rng = np.random.default_rng(3)
    image, text = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    image /= np.linalg.norm(image, axis=1, keepdims=True)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    scale = math.exp(2.6592)
    s = [[scale * sum(image[i][k] * text[j][k] for k in range(3)) for j in range(4)] for i in range(4)]
    rows = [-(s[i][i] - math.log(sum(math.exp(s[i][j]) for j in range(4)))) for i in range(4)]
    cols = [-(s[j][j] - math.log(sum(math.exp(s[i][j]) for i in range(4)))) for j in range(4)]
    expected = (sum(rows) / 4 + sum(cols) / 4) / 2
    got = clip_loss(torch.tensor(image), torch.tensor(text), scale)
    assert float(got) == pytest.approx(expected, rel=1e-9)
    from harness.torchcompat import ensure_torchvision

    ensure_torchvision()
    from transformers.models.clip import modeling_clip

    # what the official misc.py::loss calls: clip_loss (transformers 4), renamed in transformers 5
    official = getattr(modeling_clip, "clip_loss", None) or modeling_clip.image_text_contrastive_loss
    assert float(got) == pytest.approx(float(official(scale * torch.tensor(image) @ torch.tensor(text).T)), rel=1e-9)


# -- trainer --------------------------------------------------------------------------------------
def test_split_matches_random_random_shuffle() -> None:
    train_idx, val_idx = split_indices(10, 3, seed=42)
    order = list(range(10))
    random.Random(42).shuffle(order)
    assert val_idx == order[:3] and train_idx == order[3:]
    with pytest.raises(ValueError, match="fewer than 2"):
        split_indices(10, 9, seed=0)


def test_training_is_seeded_and_learns() -> None:
    vision, language = _aligned()
    config = SMALL.replace(max_steps=60, val_split_num=16, val_check_interval=10, learning_rate=1e-2)
    a, b = train(config, vision, language, progress=False), train(config, vision, language, progress=False)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    other = train(config.replace(seed=1), vision, language, progress=False)
    assert not torch.equal(other.model.state_dict()["language_projector.projection.0.weight"],
                           a.model.state_dict()["language_projector.projection.0.weight"])
    assert (a.n_train, a.n_val, a.steps) == (80, 16, 60)
    assert a.best_val_loss == min(h["val_loss"] for h in a.history) < a.history[0]["val_loss"]
    with torch.no_grad():
        image, text = a.model(torch.tensor(vision), torch.tensor(language))
    assert float(((image @ text.T).argmax(1) == torch.arange(len(image))).float().mean()) > 0.8


def test_bf16_mixed_precision_trains_float32_weights_to_a_similar_head() -> None:
    vision, language = _aligned()
    config = SMALL.replace(max_steps=40, learning_rate=1e-2)
    full, mixed = (train(config.replace(precision=p), vision, language, progress=False) for p in ("32-true", "bf16-mixed"))
    assert all(v.dtype == torch.float32 for v in mixed.model.state_dict().values() if v.is_floating_point())
    assert np.isfinite(mixed.final_train_loss) and mixed.final_train_loss == pytest.approx(full.final_train_loss, abs=0.3)
    assert mixed.final_train_loss != full.final_train_loss  # the forward really ran in bf16


def test_accumulation_steps_at_accumulation_and_epoch_ends() -> None:
    # 40 pairs in micro-batches of 8 -> 5 per epoch; accumulate 3 -> steps after 3 and 5 micro-batches
    result = train(SMALL.replace(batch_size=8, accumulate_grad_batches=3, max_steps=4), *_aligned(40), progress=False)
    assert (result.steps, result.micro_batches) == (4, 10)


def test_early_stopping_and_best_weights_restored() -> None:
    vision, language = _aligned()
    config = SMALL.replace(max_steps=200, val_split_num=16, val_check_interval=1, early_stopping_patience=3,
                           early_stopping_min_delta=100.0)  # no check can improve by 100: stop after 3
    result = train(config, vision, language, progress=False)
    assert len(result.history) == 4 and result.steps == 4 and result.best_step is not None


# -- checkpoints ----------------------------------------------------------------------------------
def _trained() -> ShareLock:
    return train(SMALL, *_aligned(), progress=False).model


def test_folder_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _trained()
    meta = {"vision": {"name": "v", "fingerprint": "f"}, "language": {"name": "l"}, "training": {"steps": 30}}
    checkpoint.save(tmp_path / "ck", model, meta)
    loaded, doc = checkpoint.load(tmp_path / "ck")
    x, y = torch.randn(4, 12), torch.randn(4, 20)
    for got, want in zip(loaded(x, y), model(x, y)):
        torch.testing.assert_close(got, want)
    assert doc["config"] == SMALL.to_dict() and doc["vision"]["name"] == "v" and doc["transform"] == "encoder"
    meta_file = tmp_path / "ck" / checkpoint.META
    meta_file.write_text(json.dumps({**doc, "format_version": 99}))
    with pytest.raises(ModelLoadError, match="format_version 99"):
        checkpoint.load(tmp_path / "ck")
    with pytest.raises(ModelLoadError, match="not a ShareLock checkpoint folder"):
        checkpoint.load(tmp_path)


def test_lightning_checkpoint_round_trip(tmp_path: Path) -> None:
    model = _trained()
    meta = {"vision": {"name": "torchvision:mobilenet_v2"}, "language": {"name": "lm:all-MiniLM-L6-v2"}}
    path = lightning.write(tmp_path / "sharelock.ckpt", model, meta, global_step=30)
    raw = torch.load(path, weights_only=True)
    assert raw["hyper_parameters"]["model"]["language_projector"] == {"hidden_size": 32, "num_layers": 3, "normalize": True}
    assert raw["global_step"] == 30 and "language_projector.projection.8.weight" in raw["state_dict"]
    loaded, doc = lightning.load(path)
    assert loaded.config == model.config and doc == meta
    x, y = torch.randn(4, 12), torch.randn(4, 20)
    for got, want in zip(loaded(x, y), model(x, y)):
        torch.testing.assert_close(got, want)


def _fake_omegaconf(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """Classes pickled under OmegaConf's names with OmegaConf 2.x's state layout (checked against
    omegaconf 2.4: ``DictConfig``/``ListConfig`` hold ``_content``, nodes hold ``_val``)."""
    made = {}
    monkeypatch.setitem(sys.modules, "omegaconf", types.ModuleType("omegaconf"))
    for module, names in {"omegaconf.dictconfig": ["DictConfig"], "omegaconf.listconfig": ["ListConfig"],
                          "omegaconf.nodes": ["AnyNode"], "omegaconf.base": ["ContainerMetadata", "Metadata"]}.items():
        mod = types.ModuleType(module)
        for name in names:
            cls = type(name, (), {"__module__": module})
            setattr(mod, name, cls)
            made[name] = cls
        monkeypatch.setitem(sys.modules, module, mod)
    return types.SimpleNamespace(**made)


def _as_omegaconf(value, oc, parent=None):  # noqa: ANN001, ANN202 - test helper
    """Build the fake OmegaConf object graph of a plain config."""
    if isinstance(value, (dict, list)):
        node = (oc.DictConfig if isinstance(value, dict) else oc.ListConfig)()
        meta = oc.ContainerMetadata()
        meta.__dict__.update(ref_type=None, object_type=dict, optional=True, key=None, flags={})
        items = value.items() if isinstance(value, dict) else enumerate(value)
        content = {k: _as_omegaconf(v, oc, node) for k, v in items}
        node.__dict__.update(_metadata=meta, _parent=parent,
                             _content=content if isinstance(value, dict) else list(content.values()))
        return node
    leaf, meta = oc.AnyNode(), oc.Metadata()
    meta.__dict__.update(ref_type=None, object_type=None, optional=True, key=None, flags={})
    leaf.__dict__.update(_val=value, _metadata=meta, _parent=parent)
    return leaf


def test_official_checkpoint_with_omegaconf_hparams(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    oc = _fake_omegaconf(monkeypatch)
    hparams = json.loads(json.dumps(OFFICIAL))
    hparams["model"]["language_projector"].update(hidden_size=16, num_layers=2)
    hparams["data"]["caption_files"] = ["cc3m.json"]
    model = ShareLock(lightning.config_from(hparams, "test"), vision_dim=8, language_dim=10)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ckpt = {"epoch": 3, "global_step": 5000, "pytorch-lightning_version": "2.4.0", "state_dict": state,
            "hyper_parameters": _as_omegaconf(hparams, oc), "hparams_type": oc.DictConfig,
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]}],
            "callbacks": {"ModelCheckpoint{'monitor': 'validation_loss'}": {"best_model_score": torch.tensor(1.5)}}}
    torch.save(ckpt, tmp_path / "ShareLock-CC3M.ckpt")
    for module in [m for m in sys.modules if m.startswith("omegaconf")]:
        monkeypatch.delitem(sys.modules, module)  # reading must not need OmegaConf
    loaded, meta = lightning.load(tmp_path / "ShareLock-CC3M.ckpt")
    assert loaded.config.language_hidden_size == 16 and (loaded.vision_dim, loaded.language_dim) == (8, 10)
    for key, value in state.items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert meta["vision"]["name"] == "hf:facebook/dinov2-large"
    assert meta["language"]["name"] == "lm:meta-llama/Meta-Llama-3-8B#pool=last"
    assert meta["transform"] == "sharelock"  # the official eval transform, not training augmentation


class _Payload:
    """Pickles as a call of ``os.system``: must never run."""

    def __reduce__(self):  # noqa: ANN204
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_unsafe_checkpoints_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"x": _Payload()}}, path, pickle_module=pickle)
    with pytest.raises(ModelLoadError, match="cannot read safely"):
        lightning.load(path)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.ckpt")
    with pytest.raises(ModelLoadError, match="no 'state_dict'"):
        lightning.load(tmp_path / "other.ckpt")
