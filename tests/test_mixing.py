"""data.mixup / data.cutmix: targets are probabilities that sum to 1, the images are mixed as
torchvision mixes them, an unmixed batch gets one-hot targets, and a run trains with them."""

from __future__ import annotations

import math

import pytest
import torch

from bioclf.engine import train
from bioclf.engine.mixing import BatchMix, build_batch_mix
from bioclf.spec.schema import DataConfig, MixConfig
from recording import RecordingLogger
from test_engine import tiny_config


def _batch(n: int = 8, classes: int = 5):
    torch.manual_seed(0)
    return torch.rand(n, 3, 16, 16), torch.randint(0, classes, (n,))


@pytest.mark.parametrize("kind", ["mixup", "cutmix", "both"])
def test_mixed_targets_are_probabilities_summing_to_one(kind):
    images, labels = _batch()
    cfg = MixConfig(alpha=1.0)
    mix = BatchMix(5, mixup=cfg if kind in ("mixup", "both") else None,
                   cutmix=cfg if kind in ("cutmix", "both") else None)
    for _ in range(5):
        out, targets = mix(images, labels)
        assert out.shape == images.shape and targets.shape == (8, 5) and targets.dtype == torch.float32
        torch.testing.assert_close(targets.sum(1), torch.ones(8))
        assert (targets >= 0).all()
        # each image holds its own label and the label of the one it was mixed with, nothing else
        assert ((targets > 0).sum(1) <= 2).all()
        if kind == "mixup":  # a blend always keeps some of the image's own label
            assert (targets[torch.arange(8), labels] > 0).all()


def test_mixup_blends_images_and_labels_by_the_same_weight():
    images, _ = _batch()
    labels = torch.arange(8) % 5  # image 0 (class 0) and image 7 (class 2) differ
    torch.manual_seed(1)
    out, targets = BatchMix(5, mixup=MixConfig(alpha=0.4))(images, labels)
    lam = targets[0, 0].item()
    assert 0 < lam < 1 and targets[0, 2].item() == pytest.approx(1 - lam, abs=1e-6)
    # torchvision mixes each image with the previous one of the batch (a roll by one)
    torch.testing.assert_close(out[0], lam * images[0] + (1 - lam) * images[-1], rtol=1e-5, atol=1e-6)


def test_an_unmixed_batch_has_one_hot_targets():
    images, labels = _batch()
    out, targets = BatchMix(5, mixup=MixConfig(alpha=0.2, p=0.0))(images, labels)
    assert torch.equal(out, images)
    assert torch.equal(targets, torch.nn.functional.one_hot(labels, 5).float())


def test_no_mix_configured_is_none_and_bad_alpha_is_refused():
    assert build_batch_mix(DataConfig(), 5) is None
    assert isinstance(build_batch_mix(DataConfig(cutmix={"alpha": 1.0}), 5), BatchMix)
    with pytest.raises(Exception, match="alpha"):
        DataConfig(mixup={"alpha": 0.0})
    with pytest.raises(Exception, match=r"mixup\.p\n.*less than or equal to 1"):
        DataConfig(mixup={"alpha": 0.2, "p": 1.5})


def test_a_run_trains_with_mixup_and_cutmix(tmp_path):
    log = RecordingLogger()
    cfg = tiny_config(train={"epochs": 1}, data={"mixup": {"alpha": 0.2}, "cutmix": {"alpha": 1.0, "p": 0.5}})
    train(cfg, log, tmp_path, quiet=True)
    (_, metrics), = log.epochs
    assert math.isfinite(metrics["train_loss"]) and 0 <= metrics["train_acc"] <= 1
    plain = RecordingLogger()
    train(tiny_config(train={"epochs": 1}), plain, tmp_path / "plain", quiet=True)
    assert plain.epochs[0][1]["train_loss"] != metrics["train_loss"]


def test_every_row_of_the_regularization_ablation_trains_tiny(tmp_path):
    """The spec's rows, laid over the tiny config, each train an epoch on CPU."""
    import yaml

    from bioclf.spec import expand_dotted
    from conftest import EXPERIMENTS

    rows = yaml.safe_load((EXPERIMENTS / "regularization_ablation.yaml").read_text())["variants"]
    losses = {}
    for name, overrides in rows.items():
        log = RecordingLogger()
        over = expand_dotted(overrides)
        over["train"] = {**over.get("train", {}), "epochs": 1}
        train(tiny_config(**over), log, tmp_path / name, quiet=True)
        losses[name] = log.epochs[0][1]["val_loss"]
        assert math.isfinite(losses[name]), name
    assert len(set(losses.values())) == len(rows)  # every row changed what was measured
