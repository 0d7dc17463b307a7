"""Image transforms: shapes, normalisation, determinism, and boxes/masks moving with the image."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avfusion import transforms as T


def _painted(h=180, w=260, box=(40, 30, 150, 120)):
    """uint8 (h, w, 3) dark image with a white box (x0, y0, x1, y1) and the matching (h, w) mask."""
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    mask = np.zeros((h, w), np.int64)
    mask[y0:y1, x0:x1] = 3
    return img, mask, box


def _raster(box, h, w) -> np.ndarray:
    x0, y0, x1, y1 = [float(v) for v in box]
    ys, xs = np.mgrid[0:h, 0:w] + 0.5                          # pixel centres
    return (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / max((a | b).sum(), 1)


def test_to_float_tensor_and_normalize():
    img = np.full((4, 5, 3), 255, np.uint8)
    x = T.to_float_tensor(img)
    assert x.shape == (3, 4, 5) and x.dtype == torch.float32 and torch.all(x == 1)
    n = T.normalize(x)
    expected = [(1 - m) / s for m, s in zip(T.IMAGENET_MEAN, T.IMAGENET_STD)]
    torch.testing.assert_close(n[:, 0, 0], torch.tensor(expected))
    with pytest.raises(TypeError):
        T.to_float_tensor(torch.zeros(3, 4, 5, dtype=torch.int32))


def test_normalize_uint8_equals_normalize_of_the_scaled_image():
    x = torch.arange(256, dtype=torch.uint8).repeat(3, 4, 1)[None]               # (1, 3, 4, 256): every value
    got = T.normalize_uint8(x)
    assert got.dtype == torch.float32 and got.shape == x.shape
    torch.testing.assert_close(got, T.normalize(x.float() / 255.0), rtol=0, atol=1e-6)
    mean, std = torch.tensor(T.IMAGENET_MEAN), torch.tensor(T.IMAGENET_STD)
    assert torch.allclose(got[0, :, 0, 0], -mean / std) and torch.allclose(got[0, :, 0, 255], (1 - mean) / std)
    with pytest.raises(TypeError, match="uint8"):
        T.normalize_uint8(x.float())


def test_eval_transform_resizes_shorter_side_then_centre_crops():
    img = np.zeros((300, 400, 3), np.uint8)
    img[:, 200:] = 255                                          # right half white
    geo = T.eval_geometry(300, 400, 224)
    assert geo.resize_to == (256, 341) and geo.crop == (16, 58, 224, 224)
    x = T.eval_transform(img, 224, do_normalize=False)
    assert x.shape == (3, 224, 224)
    # the white edge sits at x = 200 * 341/400 - 58 = 112.5 in the output
    assert x[0, 112, 105] < 0.01 and x[0, 112, 120] > 0.99
    assert T.eval_geometry(128, 96, 64).resize_to == (97, 73)   # int(256 * 64 / 224) = 73


def test_train_transform_shape_determinism_and_generator_only():
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    a = T.train_transform(img, 64, torch.Generator().manual_seed(5))
    torch.manual_seed(999)                                      # global RNG must not matter
    b = T.train_transform(img, 64, torch.Generator().manual_seed(5))
    c = T.train_transform(img, 64, torch.Generator().manual_seed(6))
    assert a.shape == (3, 64, 64)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)


def test_random_resized_crop_params_respect_scale_and_ratio():
    g = torch.Generator().manual_seed(0)
    flips = 0
    for _ in range(200):
        top, left, h, w = T.random_resized_crop_params(200, 300, g, scale=(0.5, 1.0))
        assert 0 <= top and top + h <= 200 and 0 <= left and left + w <= 300
        assert 0.5 * 60000 * 0.95 <= h * w <= 60000
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
        flips += T.train_geometry(200, 300, 64, g).flip
    assert 60 < flips < 140                                     # p = 0.5
    # impossible ratio: falls back to the largest centred crop with a clamped aspect
    assert T.random_resized_crop_params(10, 1000, g, scale=(0.99, 1.0)) == (0, 493, 10, 13)


def test_hflip_geometry_flips_image():
    x = torch.arange(12.0).reshape(1, 3, 4)
    geo = T.Geometry((3, 4), (0, 0, 3, 4), (3, 4), flip=True)
    torch.testing.assert_close(T.apply_geometry(x, geo), x.flip(-1))
    boxes = T.apply_geometry_boxes([[0, 0, 1, 2]], geo, (3, 4))
    torch.testing.assert_close(boxes, torch.tensor([[3.0, 0, 4, 2]]))


@pytest.mark.parametrize("seed", range(6))
def test_train_joint_boxes_and_mask_follow_the_image(seed):
    img, mask, box = _painted()
    x, boxes, m = T.train_transform_joint(img, [box], mask, size=96, generator=torch.Generator().manual_seed(seed),
                                          crop_min=0.3, do_normalize=False)
    assert x.shape == (3, 96, 96) and boxes.shape == (1, 4) and m.shape == (96, 96) and m.dtype == torch.int64
    painted = x[0].numpy() > 0.5
    assert painted.any()
    assert _iou(painted, _raster(boxes[0], 96, 96)) > 0.9
    assert _iou(m.numpy() == 3, _raster(boxes[0], 96, 96)) > 0.9
    assert set(torch.unique(m).tolist()) <= {0, 3}              # nearest neighbour: no new labels


def test_joint_same_generator_same_geometry_as_image_only():
    img, mask, box = _painted()
    x1 = T.train_transform(img, 64, torch.Generator().manual_seed(2))
    x2, _, _ = T.train_transform_joint(img, [box], mask, size=64, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(x1, x2, rtol=0, atol=0)


def test_eval_joint_boxes_and_mask():
    img, mask, box = _painted()
    x, boxes, m = T.eval_transform_joint(img, np.array([box, [0, 0, 5, 5]]), mask[None], size=112,
                                         do_normalize=False)
    assert x.shape == (3, 112, 112) and m.shape == (1, 112, 112)
    assert _iou(x[0].numpy() > 0.5, _raster(boxes[0], 112, 112)) > 0.9
    assert _iou(m[0].numpy() == 3, _raster(boxes[0], 112, 112)) > 0.9
    assert (boxes[1, 2] - boxes[1, 0]) * (boxes[1, 3] - boxes[1, 1]) == 0   # outside the crop: empty, kept
    with pytest.raises(ValueError):
        T.eval_transform_joint(img, None, mask[:10], size=112)


def test_float_chw_batch_input():
    x = torch.rand(2, 3, 50, 70, generator=torch.Generator().manual_seed(0))
    out = T.eval_transform(x, 32)
    assert out.shape == (2, 3, 32, 32)
    single = T.eval_transform(x[1], 32)
    torch.testing.assert_close(out[1], single)
