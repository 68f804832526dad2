"""Whole scenes as a step's data (docs/pointcloud-scenes.md#data, #evaluation): which scenes every
step of a split trains on, what one training access returns, and a test metric that scores every
point of every scene exactly once. The scene files are written here in the prepared layout, with
label counts chosen so that the presence rule's outcome is known by hand."""

import numpy as np
import pytest
import torch

from css.distributed import DistEnv
from css.errors import ConfigError, DataError
from css.nn import SegOutput
from css.pointcloud.data import load_dataset_task, open_split
from css.pointcloud.scenes.data import build_scene_dataset
from css.pointcloud.scenes.evaluation import evaluate_scenes
from css.pointcloud.scenes.sampling import voxel_cells
from css.pointcloud.store import scene_file, write_split

CLASSES = ["floor", "wall", "chair", "lamp"]
# label -> points per scene; presence (fraction 0, 100 points) shows a label with more than 100 points
TRAIN = [{0: 300, 1: 300},            # shows 0, 1
         {0: 200, 2: 150},            # shows 0, 2
         {1: 200, 2: 50, 3: 150},     # shows 1, 3 (2 has only 50)
         {0: 400, 3: 90}]             # shows 0 (3 has only 90)
TEST = [{0: 120, 1: 80, 2: 60, 3: 40}, {1: 150, 3: 110}]


def _scene(table, seed):
    rng = np.random.default_rng(seed)
    labels = np.concatenate([np.full(n, label) for label, n in table.items()])
    rng.shuffle(labels)
    n = len(labels)
    coord = rng.uniform(0, 1, (n, 3)) * [2.0, 1.5, 1.0]
    coord[: n // 4] = np.round(coord[: n // 4] * 5) / 5  # a quarter of the points share voxels
    # the colour encodes the point's index (a unique colour per point) and its red channel the label
    color = np.stack([labels * 60, np.arange(n) // 256, np.arange(n) % 256], axis=1).astype(np.uint8)
    return coord.astype(np.float32), color, labels


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    written = {}
    for split, tables in (("train", TRAIN), ("test", TEST)):
        scenes = []
        for k, table in enumerate(tables):
            coord, color, labels = _scene(table, 10 * k + len(split))
            scenes.append({"coord": coord, "color": color, "labels": {"reference": labels},
                           "block_id": f"{split}_{k}", "scene": f"{split}_{k}", "origin": np.zeros(2)})
        write_split(root / scene_file(split), scenes, dataset="folder", split=split, class_names=CLASSES,
                    block_size=0.0, stride=0.0, min_points=0, attrs={"background": -1, "unit": "scene"})
        # the block file a run also finds beside it (the task is read from it)
        write_split(root / f"{split}.h5", scenes, dataset="folder", split=split, class_names=CLASSES,
                    block_size=1.0, stride=1.0, min_points=1, attrs={"background": -1})
        written[split] = scenes
    return root, written


def dataset(root, step, split, *, overlap=True, **kwargs):
    task = load_dataset_task("folder", [[0, 1], [2], [3]], root=root)
    return task, build_scene_dataset("folder", root, task=task, step=step, split=split, voxel_size=0.1,
                                     presence=(0.0, 100), overlap=overlap, **kwargs)


def test_every_step_trains_on_the_scenes_that_show_its_classes(root):
    root, _ = root
    assert [dataset(root, s, "train")[1].ids for s in range(3)] == [
        ["train_0", "train_1", "train_2", "train_3"], ["train_1"], ["train_2"]]
    # disjoint: no scene that shows a future class (train_1 shows 2, train_2 shows 3)
    assert dataset(root, 0, "train", overlap=False)[1].ids == ["train_0", "train_3"]
    assert [dataset(root, s, "test")[1].ids for s in range(3)] == [["test_0", "test_1"]] * 3
    # the test labels of step 1: 0 -> 1, 1 -> 2, 2 -> 3 (learnt), 3 -> 0 (a future class)
    task, test = dataset(root, 1, "test")
    scene = test.load(0)
    red = scene["color"][:, 0] // 60
    assert np.array_equal(scene["label"], np.array([1, 2, 3, 0])[red])
    assert test.shown_labels() == {0, 1, 3} and len(scene["label"]) == sum(TEST[0].values())


def test_a_training_access_keeps_one_point_per_voxel_cropped(root):
    root, written = root
    _, train = dataset(root, 0, "train", max_points=150, seed=3)
    features, grid, labels = train[1]
    coord = written["train"][1]["coord"].astype(np.float64)
    assert features.shape == (150, 6) and grid.shape == (150, 3) and labels.shape == (150,)
    index = ((features[:, 1] + 1) * 127.5).round().long() * 256 + ((features[:, 2] + 1) * 127.5).round().long()
    picked = index.numpy()
    assert len(set(picked)) == 150  # distinct points...
    cells = np.floor((coord - coord.min(axis=0)) / 0.1).astype(np.int64)
    assert np.array_equal(grid.numpy(), cells[picked])  # ...with their voxels, as computed by hand,
    assert len({tuple(c) for c in cells[picked]}) == 150  # one per voxel
    red = written["train"][1]["color"][picked, 0] // 60
    assert np.array_equal(labels.numpy(), np.array([1, 2, 0, 0])[red])  # step 0: chair, lamp are background
    # the position features: x, y about the sample's mean, z above its lowest point
    xyz = coord[picked]
    np.testing.assert_allclose(features[:, 3:].numpy(), np.c_[xyz[:, :2] - xyz[:, :2].mean(0), xyz[:, 2:] - xyz[:, 2].min()],
                               atol=1e-5)
    assert np.array_equal(train[1][0].numpy(), features.numpy())  # a seeded access repeats
    # with augmentation the points are still one per voxel of the augmented scene
    _, aug = dataset(root, 0, "train", max_points=None, augment=True, seed=4)
    f, g, _ = aug[1]
    assert len({tuple(c) for c in g.numpy()}) == len(g) and f.shape[1] == 6


class _Oracle(torch.nn.Module):
    """Logits that put the point's own label (read from the red channel) first: a prediction that is
    right wherever the metric maps each point's softmax back to that point."""

    def __init__(self, channels):
        super().__init__()
        self.channels = channels
        self.calls = 0

    def forward(self, batch):
        self.calls += 1
        label = torch.round((batch.features[:, 0] + 1) * 127.5 / 60).long()
        channel = torch.tensor([1, 2, 3, 0])[label]  # step 1 channels, 3 -> background
        logits = torch.nn.functional.one_hot(channel, self.channels).float().t().unsqueeze(0) * 5
        return SegOutput(logits, logits, {})


@pytest.mark.parametrize("rotations", [1, 3])
def test_the_test_metric_scores_every_point_of_every_scene_once(root, rotations):
    root, _ = root
    task, test = dataset(root, 1, "test")
    env = DistEnv(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    model = _Oracle(task.num_classes(1))
    cm = evaluate_scenes(model, test, num_classes=task.num_classes(1), env=env, batch_size=2, rotations=rotations)
    points = sum(sum(t.values()) for t in TEST)
    assert cm.points == points and int(cm.matrix.sum()) == points and cm.blocks == cm.samples == 2
    assert int(cm.matrix.diag().sum()) == points  # every point got its own softmax back
    # per class: test_0 has 120 / 80 / 60 / 40 points of labels 0..3, test_1 150 of label 1 and 110 of 3
    assert cm.matrix.sum(1).tolist() == [40 + 110, 120, 80 + 150, 60]
    # the forward passes: ceil(fragments / batch) per rotation and scene
    fragments = []
    for k in range(2):
        coord = test.load(k)["coord"]
        for r in range(rotations):
            from css.pointcloud.scenes.transforms import rotate_z

            turned = rotate_z(coord, 2 * np.pi * r / rotations) if r else coord
            _, counts = np.unique(voxel_cells(turned, 0.1), axis=0, return_counts=True)
            fragments.append(-(-int(counts.max()) // 2))
    assert model.calls == cm.forwards == sum(fragments)


def test_scene_files_and_keys_fail_clearly(root, tmp_path):
    root, _ = root
    with pytest.raises(DataError, match="prepared by an older css"):
        (tmp_path / "train.h5").write_bytes((root / "train.h5").read_bytes())
        open_split("folder", tmp_path, "train", unit="scene")
    with pytest.raises(DataError, match="holds blocks, not scenes"):
        (tmp_path / "train_scenes.h5").write_bytes((root / "train.h5").read_bytes())
        open_split("folder", tmp_path, "train", unit="scene")
    with pytest.raises(ConfigError, match="data.crop"):
        dataset(root, 0, "train", crop_mode="cube")


def test_inspect_a_scene_config_counts_whole_scenes(root, tmp_path, capsys):
    """python -m css.data inspect on a data.unit: scene config: the scenes of every step (as in the
    selection test) and the points per channel of the whole scenes."""
    import yaml

    from css import data as inspect_cli

    root, _ = root
    cfg = {"modality": "pointcloud", "data": {"dataset": "folder", "root": str(root), "unit": "scene",
                                              "presence_fraction": 0.0, "presence_min_points": 100},
           "model": {"arch": "sparse_unet"}, "task": {"steps": [[0, 1], [2], [3]]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert inspect_cli.main(["inspect", "--config", str(tmp_path / "c.yaml")]) == 0
    out = capsys.readouterr().out
    assert "step 0: 4 train scenes, 2 test scenes" in out and "step 2: 1 train scenes, 2 test scenes" in out
    # step 1 trains on train_1 (200 floor, 150 chair): chair 150 points, background its 200 floor points
    step1 = out.split("step 1: 1 train scenes, 2 test scenes")[1].split("step 2:")[0]
    assert " 150 " in step1.split("chair")[1].split("\n")[0] and " 200 " in step1.split("background")[1].split("\n")[0]
