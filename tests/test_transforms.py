"""Joint image/mask transforms (docs/protocol-2d.md#transforms): alignment, nearest-neighbour masks,
shapes, values."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from css.errors import ConfigError
from css.image.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RandomResizedCrop,
    eval_transform,
    train_transform,
)

# well separated colours, one per label; label 255 (ignore) is white
PALETTE = {
    0: (0, 0, 0), 1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255),
    4: (255, 255, 0), 5: (0, 255, 255), 255: (255, 255, 255),
}


def coloured_scene(rng: np.random.Generator, height: int, width: int) -> tuple[Image.Image, np.ndarray]:
    """Random rectangles of labels 1..5 (some outlined with 255) whose pixels have PALETTE colours."""
    labels = np.zeros((height, width), dtype=np.uint8)
    for n in range(6):
        h, w = rng.integers(8, height // 2), rng.integers(8, width // 2)
        top, left = rng.integers(0, height - h), rng.integers(0, width - w)
        if n % 2:
            labels[top:top + h, left:left + w] = 255
            labels[top + 2:top + h - 2, left + 2:left + w - 2] = rng.integers(1, 6)
        else:
            labels[top:top + h, left:left + w] = rng.integers(1, 6)
    image = np.zeros((height, width, 3), dtype=np.uint8)
    for label, colour in PALETTE.items():
        image[labels == label] = colour
    return Image.fromarray(image), labels


def unnormalise(image: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((image * std + mean) * 255).permute(1, 2, 0).numpy()


def nearest_palette_label(pixels: np.ndarray) -> np.ndarray:
    labels = np.array(list(PALETTE))
    colours = np.array(list(PALETTE.values()), dtype=np.float64)
    distance = ((pixels[..., None, :] - colours) ** 2).sum(-1)
    return labels[distance.argmin(-1)]


def interior(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels whose (2r+1)^2 neighbourhood holds a single label (away from every boundary)."""
    padded = np.pad(mask, radius, mode="edge")
    same = np.ones(mask.shape, dtype=bool)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            same &= padded[dy:dy + mask.shape[0], dx:dx + mask.shape[1]] == mask
    return same


@pytest.mark.parametrize("seed", range(12))
def test_train_transform_keeps_image_and_mask_aligned(seed):
    rng = np.random.default_rng(seed)
    image, labels = coloured_scene(rng, 60, 80)
    torch.manual_seed(seed)
    out_image, out_mask = train_transform(crop_size=48)(image, tv_tensors.Mask(torch.from_numpy(labels)))
    assert type(out_image) is torch.Tensor and type(out_mask) is torch.Tensor
    assert out_image.shape == (3, 48, 48) and out_image.dtype == torch.float32
    assert out_mask.shape == (48, 48) and out_mask.dtype == torch.uint8
    mask = out_mask.numpy()
    colour_label = nearest_palette_label(unnormalise(out_image))
    checked = interior(mask, 2)
    assert checked.mean() > 0.4
    np.testing.assert_array_equal(colour_label[checked], mask[checked])
    # nearest-neighbour masks: no new values, so no new ignore pixels either
    assert set(np.unique(mask)) <= set(np.unique(labels))


@pytest.mark.parametrize("seed", range(6))
def test_random_resized_crop_mask_equals_pil_nearest(seed):
    """The mask is the crop resized with PIL's (centre-aligned) NEAREST, as in the reference;
    torchvision's default NEAREST for masks would shift it by up to half a source pixel."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 21, (30, 41)).astype(np.uint8)
    mask = tv_tensors.Mask(torch.from_numpy(labels))
    crop = RandomResizedCrop(64, scale=(0.5, 2.0), ratio=(3 / 4, 4 / 3))
    torch.manual_seed(seed)
    params = crop.make_params([mask])
    torch.manual_seed(seed)
    out = crop(mask)
    top, left, height, width = params["top"], params["left"], params["height"], params["width"]
    expected = Image.fromarray(labels).crop((left, top, left + width, top + height)).resize((64, 64), Image.NEAREST)
    np.testing.assert_array_equal(out.numpy(), np.asarray(expected))


def test_train_transform_flips_and_crops_randomly():
    rng = np.random.default_rng(0)
    image, labels = coloured_scene(rng, 60, 80)
    mask = tv_tensors.Mask(torch.from_numpy(labels))
    transform = train_transform(crop_size=32)
    outputs = []
    for seed in range(8):
        torch.manual_seed(seed)
        outputs.append(transform(image, mask)[1])
    assert len({out.numpy().tobytes() for out in outputs}) == 8


def test_train_transform_on_tensor_input_matches_pil():
    rng = np.random.default_rng(1)
    image, labels = coloured_scene(rng, 40, 50)
    tensor = tv_tensors.Image(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
    mask = tv_tensors.Mask(torch.from_numpy(labels))
    torch.manual_seed(5)
    from_pil = train_transform(crop_size=24)(image, mask)
    torch.manual_seed(5)
    from_tensor = train_transform(crop_size=24)(tensor, mask)
    torch.testing.assert_close(from_pil[0], from_tensor[0])
    torch.testing.assert_close(from_pil[1], from_tensor[1])


def test_eval_crop_mask_equals_pil_nearest():
    """Resize(short side) + CenterCrop: the mask is PIL NEAREST-resized then centre-cropped,
    as in the reference (docs/protocol-2d.md#transforms)."""
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 21, (37, 53)).astype(np.uint8)
    image = Image.fromarray(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8))
    out_image, out_mask = eval_transform("crop", crop_size=16)(image, tv_tensors.Mask(torch.from_numpy(labels)))
    assert out_image.shape == (3, 16, 16) and out_mask.shape == (16, 16)
    resized = np.asarray(Image.fromarray(labels).resize((int(16 * 53 / 37), 16), Image.NEAREST))
    left = int(round((resized.shape[1] - 16) / 2.0))
    np.testing.assert_array_equal(out_mask.numpy(), resized[:, left:left + 16])


@pytest.mark.parametrize("height,width", [(30, 40), (45, 20)])
def test_eval_transform_shapes(height, width):
    image = Image.new("RGB", (width, height), (10, 20, 30))
    mask = tv_tensors.Mask(torch.zeros(height, width, dtype=torch.uint8))
    crop_image, crop_mask = eval_transform("crop", crop_size=16)(image, mask)
    assert crop_image.shape == (3, 16, 16) and crop_mask.shape == (16, 16)
    whole_image, whole_mask = eval_transform("whole")(image, mask)
    assert whole_image.shape == (3, height, width) and whole_mask.shape == (height, width)
    assert whole_mask.dtype == torch.uint8
    # ImageNet normalisation of a constant colour
    expected = [(v / 255 - m) / s for v, m, s in zip((10, 20, 30), IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(whole_image[:, 0, 0], torch.tensor(expected), atol=1e-6, rtol=0)
    torch.testing.assert_close(crop_image[:, 5, 7], torch.tensor(expected), atol=1e-6, rtol=0)


def test_eval_whole_keeps_labels_unchanged():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 256, (11, 13)).astype(np.uint8)
    _, out = eval_transform("whole")(Image.new("RGB", (13, 11)), tv_tensors.Mask(torch.from_numpy(labels)))
    np.testing.assert_array_equal(out.numpy(), labels)


def test_unknown_eval_mode():
    with pytest.raises(ConfigError, match="eval_mode"):
        eval_transform("full")
