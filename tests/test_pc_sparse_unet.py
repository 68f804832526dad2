"""The sparse-voxel UNet (docs/pointcloud-scenes.md#backbone) on CPU: shapes, heads and hand-over,
gradients, samples that never mix, voxels shared by points, and the error without spconv."""

import sys

import numpy as np
import pytest
import torch

from css.errors import DependencyError
from css.pointcloud.scenes.sampling import collate_scenes, grid_sample
from css.pointcloud.scenes.unet import PRESETS, build_sparse_unet, sparse_library

VOXEL = 0.1


def room(n, seed):
    rng = np.random.default_rng(seed)
    xyz = rng.random((n, 3)) * np.array([3.0, 2.0, 1.5])
    xyz = xyz[grid_sample(xyz, VOXEL, rng)]  # one point per voxel, as training feeds it
    features = torch.from_numpy(np.concatenate([xyz, rng.random((len(xyz), 3))], axis=1)).float()
    return features, torch.from_numpy(np.floor(xyz / VOXEL).astype(np.int64))


def batch(*rooms):
    out, _ = collate_scenes([(f, g, torch.zeros(len(f), dtype=torch.int64)) for f, g in rooms])
    return out.features, out.grid, out.offsets


@pytest.fixture(scope="module")
def rooms():
    torch.manual_seed(0)
    return room(3000, 1), room(2000, 2)


def test_shapes_heads_and_gradients(rooms):
    model = build_sparse_unet([5, 2], in_channels=6, preset="small")
    features, grid, offsets = batch(*rooms)
    out = model(features, grid, offsets)
    n = len(features)
    assert out.logits.shape == (1, 7, n) and out.features["body"].shape == (1, 32, n)
    assert model.classes_per_step == [5, 2] and model.feature_channels == PRESETS["small"]["channels"][-1]
    out.logits.square().mean().backward()  # spconv's CPU backward runs (sparse_library's stream guard)
    assert model.stem[0].weight.grad.abs().sum() > 0 and model.cls[1].weight.grad.abs().sum() > 0


def test_the_published_preset_has_the_published_size():
    model = build_sparse_unet([13], preset="spunet")
    # SpUNet: stem 32, encoder 32-64-128-256 (2-3-4-6 blocks), decoder 256-128-96-96 (2 blocks each)
    assert [len(stage) for stage in model.encoder] == [2, 3, 4, 6]
    assert [len(stage) for stage in model.decoder] == [2, 2, 2, 2]
    assert model.feature_channels == 96 and 38e6 < sum(p.numel() for p in model.parameters()) < 40e6


def test_samples_never_mix_and_voxels_are_shared(rooms):
    model = build_sparse_unet([4], preset="small").eval()
    (fa, ga), (fb, gb) = rooms
    with torch.no_grad():
        alone = model(fa, ga, torch.tensor([len(fa)])).logits
        together = model(*batch((fa, ga), (fb, gb))).logits
        assert torch.allclose(together[..., : len(fa)], alone, atol=1e-4)
        # the order of the points does not matter: a permutation permutes the logits
        perm = torch.randperm(len(fa))
        assert torch.allclose(model(fa[perm], ga[perm], torch.tensor([len(fa)])).logits, alone[..., perm], atol=1e-4)
        # a second point in a voxel: both get the voxel's prediction, made from their mean features
        twin = torch.cat([fa, fa[:1] + 0.01]), torch.cat([ga, ga[:1]])
        logits = model(*twin, torch.tensor([len(fa) + 1])).logits
        assert torch.equal(logits[..., 0], logits[..., -1])


def test_hand_over_to_a_model_with_one_more_head(rooms):
    import copy

    assert copy.deepcopy(build_sparse_unet([4], preset="small")).classes_per_step == [4]  # the old model is a copy
    old = build_sparse_unet([4], preset="small")
    new = build_sparse_unet([4, 2], preset="small")
    missing, unexpected = new.load_state_dict(old.state_dict(), strict=False)
    assert sorted(missing) == ["cls.1.bias", "cls.1.weight"] and unexpected == []
    new.init_new_head_from_background()  # rows from the background row, biases b_bg - ln 3
    assert torch.equal(new.cls[1].weight[1], old.cls[0].weight[0])
    assert torch.isclose(new.cls[1].bias[0], old.cls[0].bias[0] - np.log(3))


def test_without_spconv_the_error_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "spconv.pytorch", None)
    with pytest.raises(DependencyError, match="pip install spconv==2.3.8"):
        sparse_library()


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)  # where spconv's kernels race
    yield
    torch.set_num_threads(before)


def test_on_a_cpu_the_sparse_part_is_exact_and_repeatable(rooms, two_threads):
    """spconv's CPU kernels race on several threads (docs/pointcloud-scenes.md#the-sparse-convolution-library):
    the model runs them on one, forward and backward, and gives the threads back."""
    model = build_sparse_unet([4], preset="small").train()
    features, grid, offsets = batch(*rooms)
    seen = {}
    model.stem[0].register_forward_hook(lambda m, inp, out: seen.update(x=inp[0], y=out))
    runs = []
    for _ in range(2):
        model.zero_grad()
        model(features, grid, offsets).logits.square().mean().backward()
        assert torch.get_num_threads() == 2  # given back after the backward pass
        runs.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))  # the same gradients twice
    # the stem's 5^3 submanifold convolution against a dense conv3d read at the active voxels
    x, y = seen["x"], seen["y"]
    voxel = x.indices.long()
    dense = torch.zeros(x.batch_size, x.features.shape[1], *x.spatial_shape)
    dense[voxel[:, 0], :, voxel[:, 1], voxel[:, 2], voxel[:, 3]] = x.features.detach()
    weight = model.stem[0].weight.detach().permute(0, 4, 1, 2, 3)  # spconv (out, k, k, k, in)
    reference = torch.nn.functional.conv3d(dense, weight, padding=2)
    reference = reference[voxel[:, 0], :, voxel[:, 1], voxel[:, 2], voxel[:, 3]]
    assert torch.allclose(y.features.detach(), reference, atol=1e-5)
