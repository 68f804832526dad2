"""The synthetic point-cloud benchmark: deterministic rooms in the prepared format, the options
check, the cache and plausible class statistics (docs/pointcloud-datasets.md#synthetic)."""

from __future__ import annotations

import numpy as np
import pytest

from css.errors import ConfigError
from css.tasks.index import presence_share
from css.pointcloud import synthetic
from css.pointcloud.data import build_dataset, load_dataset_task, open_split
from css.pointcloud.store import BlockStore

SMALL = {"num_rooms": {"train": 2, "test": 1}, "seed": 3}


def read(folder, split):
    store = BlockStore(folder / f"{split}.h5")
    points = [store.block(i) for i in range(len(store))]
    return store, points


def same(a, b) -> bool:
    sa, pa = a
    sb, pb = b
    return sa.ids == sb.ids and all(np.array_equal(x[k], y[k]) for x, y in zip(pa, pb) for k in x)


def test_deterministic_and_seed_dependent(tmp_path):
    synthetic.generate(tmp_path / "a", options=SMALL)
    synthetic.generate(tmp_path / "b", options=SMALL)
    synthetic.generate(tmp_path / "c", options={**SMALL, "seed": 4})
    for split in ("train", "test"):
        assert same(read(tmp_path / "a", split), read(tmp_path / "b", split))
    a, c = read(tmp_path / "a", "train"), read(tmp_path / "c", "train")
    assert not np.array_equal(a[1][0]["coord"][:100], c[1][0]["coord"][:100])
    # train and test rooms differ
    assert not np.array_equal(read(tmp_path / "a", "test")[1][0]["coord"][:100], a[1][0]["coord"][:100])


def test_prepared_format(tmp_path):
    synthetic.generate(tmp_path, options=SMALL)
    store, points = read(tmp_path, "train")
    assert store.attrs["dataset"] == "synthetic" and store.attrs["background"] == -1
    assert store.class_names == ("floor", "wall", "ceiling", "table", "chair", "sofa", "bookcase", "lamp")
    assert store.ids[0] == "train_room_000_block_0" and (store.sizes >= 500).all()
    for block in points:
        assert block["coord"].dtype == np.float32 and block["color"].dtype == np.uint8
        xy = block["coord"][:, :2]
        assert (np.ptp(xy, axis=0) <= 1.0 + 1e-5).all()   # 1 m tiles
        assert set(np.unique(block["label"])) <= set(range(8))


def test_cache_reused_and_keyed_by_options(tmp_path, monkeypatch):
    first = synthetic.ensure(SMALL, cache_dir=tmp_path)
    assert first.name.startswith("css-synthetic-pc-") and (first / "train.h5").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]   # no temporary folder left

    def fail(*args, **kwargs):
        raise AssertionError("the cached benchmark was generated again")

    monkeypatch.setattr(synthetic, "generate", fail)
    assert synthetic.ensure(dict(SMALL), cache_dir=tmp_path) == first
    assert synthetic.options_key({**SMALL, "seed": 5}) != synthetic.options_key(SMALL)
    # the defaults spelled out give the same key as no options
    assert synthetic.options_key({"seed": 0}) == synthetic.options_key(None)
    monkeypatch.setenv("CSS_CACHE_DIR", str(tmp_path))
    assert open_split("synthetic", None, "test", options=SMALL).path == first / "test.h5"


@pytest.mark.parametrize("options, message", [
    ({"rooms": 3}, r"data\.options\.rooms.*valid: num_rooms"),
    ({"num_rooms": {"train": 2}}, r"data\.options\.num_rooms"),
    ({"num_classes": 9}, r"data\.options\.num_classes must be an int in 1\.\.8"),
    ({"room_size": [5, 3]}, r"data\.options\.room_size"),
    ({"points_per_m2": "many"}, r"data\.options\.points_per_m2"),
])
def test_option_errors(options, message):
    with pytest.raises(ConfigError, match=message):
        synthetic.synthetic_options(options)


def test_tasks_on_synthetic(tmp_path, monkeypatch):
    monkeypatch.setenv("CSS_CACHE_DIR", str(tmp_path))
    task = load_dataset_task("synthetic", "5-2", options={"num_classes": 4})   # 7 labels
    assert task.steps == [[0, 1, 2, 3, 4], [5, 6]] and task.background is None
    assert task.channel_names(1)[0] == "background" and task.channel_names(1)[-2:] == ["sofa", "bookcase"]
    opts = {**SMALL, "num_classes": 4}
    ds = build_dataset("synthetic", None, task=task, step=1, split="train", num_points=256, seed=0, options=opts)
    assert len(ds) > 0
    features, labels = ds[0]
    assert features.shape == (9, 256) and set(labels.unique().tolist()) <= {0, 6, 7}


def test_default_benchmark_size_and_classes(tmp_path):
    """The demo's benchmark: a few hundred train blocks, ~100 test blocks, every class shown by
    blocks of both splits, structure classes nearly everywhere."""
    folder = synthetic.ensure(None, cache_dir=tmp_path)
    for split, (low, high) in (("train", (200, 450)), ("test", (50, 130))):
        store = BlockStore(folder / f"{split}.h5")
        assert low <= len(store) <= high
        assert 500 <= np.median(store.sizes) <= 3500
        shown = presence_share(store.counts(), store.sizes).sum(axis=0)
        assert (shown[:3] > 0.5 * len(store)).all()                      # floor, wall, ceiling
        assert (shown[3:] >= (10 if split == "train" else 3)).all()      # every object class
        share = store.counts().sum(0) / store.sizes.sum()
        assert (share[3:] > 0.01).all() and share[1] < 0.6
