"""evaluation.tta: flip averages the softmax of an image and its mirror, in validation and in
predict; "none" is the plain forward pass, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from bioclf.engine.evaluate import evaluate, predict_probs
from bioclf.errors import BioclfError
from bioclf.spec.schema import RunConfig


class _Images(TensorDataset):
    """Images with the ``samples`` (path, label) list the evaluation loop reports paths from."""

    def __init__(self, images, labels):
        super().__init__(images, labels)
        self.samples = [(f"img{i}.jpg", int(y)) for i, y in enumerate(labels)]


def _loader(n: int = 12, classes: int = 4, seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 3, 8, 8, generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    return DataLoader(_Images(images, labels), batch_size=5)


def _pooled(classes: int = 4) -> nn.Module:
    """Global average pooling first: the mirror of an image scores exactly as the image."""
    torch.manual_seed(0)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, classes))


def _spatial(classes: int = 4) -> nn.Module:
    """Sees where things are: the mirror scores differently."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, classes))


def test_flip_of_a_mirror_invariant_model_equals_no_tta():
    model, loader, loss = _pooled(), _loader(), nn.CrossEntropyLoss(label_smoothing=0.1)
    plain = evaluate(model, loader, loss, torch.device("cpu"))
    flip = evaluate(model, loader, loss, torch.device("cpu"), tta="flip")
    np.testing.assert_allclose(flip.probs, plain.probs, rtol=1e-5, atol=1e-7)
    assert flip.acc == plain.acc and flip.loss == pytest.approx(plain.loss, rel=1e-5)


def test_flip_averages_the_softmax_of_image_and_mirror():
    model, loader = _spatial(), _loader()
    images = torch.cat([x for x, _ in loader])
    with torch.no_grad():
        want = (torch.softmax(model(images), 1) + torch.softmax(model(torch.flip(images, dims=[3])), 1)) / 2
    got = evaluate(model, loader, nn.CrossEntropyLoss(), torch.device("cpu"), tta="flip")
    np.testing.assert_allclose(got.probs, want.numpy(), rtol=1e-5, atol=1e-7)
    labels = torch.cat([y for _, y in loader])
    assert got.loss == pytest.approx(nn.functional.nll_loss(torch.log(want), labels).item(), rel=1e-5)
    plain = evaluate(model, loader, nn.CrossEntropyLoss(), torch.device("cpu"))
    assert not np.allclose(plain.probs, got.probs)  # the mirror did change something
    # predict's loop, the same averaging
    indexed = DataLoader(TensorDataset(images, torch.arange(len(images))), batch_size=5)
    np.testing.assert_allclose(predict_probs(model, indexed, torch.device("cpu"), tta="flip"), got.probs, rtol=1e-6)


def test_no_tta_is_the_plain_forward_pass_bit_for_bit():
    model, loader = _spatial(), _loader()
    images = torch.cat([x for x, _ in loader])
    with torch.no_grad():
        want = torch.softmax(model(images), 1).numpy()
    got = evaluate(model, loader, nn.CrossEntropyLoss(), torch.device("cpu"))
    assert np.array_equal(got.probs, want)


def test_tta_is_a_checked_spec_field_and_predict_defaults_to_it():
    assert RunConfig().evaluation.tta == "none"
    assert RunConfig.model_validate({"evaluation": {"tta": "flip"}}).evaluation.tta == "flip"
    with pytest.raises(Exception, match="tta"):
        RunConfig.model_validate({"evaluation": {"tta": "five"}})
    from bioclf.predict import _check_args

    assert _check_args("r1", None, None, None, None, __import__("pathlib").Path("x.csv"), []) is None
    with pytest.raises(BioclfError, match="--tta 'mirror'"):
        _check_args("r1", None, None, "mirror", None, __import__("pathlib").Path("x.csv"), [])


def test_five_crops_are_the_corners_and_the_centre_resized_back():
    from bioclf.engine.evaluate import five_crops

    ramp = torch.arange(16.0).repeat(16, 1)[None, None]  # value = column index, 16 x 16
    views = five_crops(ramp)  # 14 x 14 crops (0.875 of 16), resized back to 16 x 16
    assert all(v.shape == ramp.shape for v in views)
    left, right = views[0][0, 0, 0], views[1][0, 0, 0]
    assert left.min() >= 0 and left.max() <= 13 and right.min() >= 2 and right.max() <= 15
    torch.testing.assert_close(views[4].mean(), ramp.mean())  # the centre crop of a symmetric ramp


def test_five_crop_of_a_crop_invariant_model_equals_no_tta():
    """An image of one colour and a model that sees only the mean colour: every crop is the image."""
    g = torch.Generator().manual_seed(1)
    images = torch.rand(10, 3, 1, 1, generator=g).expand(10, 3, 8, 8).contiguous()
    loader = DataLoader(_Images(images, torch.randint(0, 4, (10,), generator=g)), batch_size=4)
    model, loss = _pooled(), nn.CrossEntropyLoss()
    plain = evaluate(model, loader, loss, torch.device("cpu"))
    crops = evaluate(model, loader, loss, torch.device("cpu"), tta="five_crop")
    np.testing.assert_allclose(crops.probs, plain.probs, rtol=1e-5, atol=1e-7)
    spatial = evaluate(_spatial(), _loader(), loss, torch.device("cpu"), tta="five_crop")
    assert not np.allclose(spatial.probs, evaluate(_spatial(), _loader(), loss, torch.device("cpu")).probs)
