"""The point-cloud modality: DGCNN and S3DIS / ScanNet / folder / synthetic blocks for the step
controller (docs/pointcloud.md).

What it owns beside the model and the datasets:
- its evaluation: the sampled metric of 3DPC-CISS (``data.num_points`` random points per test
  block, drawn with ``data.eval_seed`` so that two evaluations agree), one confusion matrix over
  all sampled points. Once every class of the task is learnt no point can be background, so
  the prediction is then the argmax over the class channels only (the synthetic background
  channel 0 is not a class; docs/pointcloud.md#evaluation);
- the ``protocol: reference`` quirks of training and evaluation (docs/pointcloud.md#protocol):
  norm layers and dropout frozen in eval mode from epoch 4 on, and the last incomplete test
  batch left out;
- the full-coverage metric (``data.full_coverage``): every point of every test block predicted,
  reported next to the sampled one (css.pointcloud.coverage, docs/pointcloud-evaluation.md#full-coverage).

With ``data.unit: scene`` (docs/pointcloud-scenes.md) the model is the sparse-voxel UNet, the datasets
hold whole scenes (css.pointcloud.scenes.data), batches are ``SceneBatch``es (``collate_points``) and
the test metric scores every point of every test scene (css.pointcloud.scenes.evaluation).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import default_collate

from css.errors import CheckpointError
from css.modality.protocol import Modality
from css.pointcloud.channels import IN_CHANNELS, class_predictor, in_channels
from css.pointcloud.config import CHOICES, PointDataConfig, PointModelConfig, PointTrainConfig, check_config
from css.tasks.task import Task

log = logging.getLogger("css")

LEGACY_EVAL_EPOCH = 3  # the reference's first validation runs after epoch 3 and never calls train()


def collate_points(items: list[tuple]) -> Any:
    """Blocks, (C_in, N) features and (N,) labels with one N, stack (torch's default collation); scene
    samples, (features, grid, labels) of their own sizes, are concatenated into a SceneBatch."""
    if len(items[0]) == 3:
        from css.pointcloud.scenes.sampling import collate_scenes

        return collate_scenes(items)
    return default_collate(items)


def scene_units(cfg) -> bool:
    return cfg.data.unit == "scene"


class PointCloudModality(Modality):
    name = "pointcloud"
    collate = staticmethod(collate_points)
    config_sections = {"data": PointDataConfig, "model": PointModelConfig, "train": PointTrainConfig}
    config_choices = CHOICES
    metric = "sampled"  # the reference's metric; the full-coverage one is recorded beside it
    predict_flags = ("--clouds", "--split")

    def __init__(self) -> None:
        self._stores: dict[tuple, Any] = {}
        self.said_inputs: set[tuple[int, bool]] = set()  # the DGCNN inputs logged so far (build_model)

    def check_config(self, cfg, where: str) -> None:
        check_config(cfg, where)

    def metric_name(self, cfg) -> str | None:
        return "scene" if scene_units(cfg) else self.metric

    def start_notes(self, cfg) -> list[str]:
        from css.methods.presets import PRESETS

        if PRESETS.get(cfg.method.name, {}).get("pod") == "local":
            return [f"method {cfg.method.name}: Local POD distils 2-D feature maps; on point clouds the preset runs "
                    f"without it (docs/methods.md#point-clouds)"]
        return []

    def method_extension(self):
        from css.pointcloud.methods import EXTENSION

        return EXTENSION

    def task(self, cfg) -> Task:
        from css.pointcloud.data import load_dataset_task
        from css.tasks.registry import task_from_config

        return task_from_config(cfg, load_dataset_task)

    def build_model(self, cfg, classes_per_step: list[int], env) -> torch.nn.Module:
        from css.pointcloud.models import build_model

        m = cfg.model
        if m.arch == "sparse_unet":
            from css.pointcloud.scenes.transforms import FEATURES
            from css.pointcloud.scenes.unet import build_sparse_unet

            return build_sparse_unet(classes_per_step, in_channels=FEATURES, preset=m.preset)
        channels = in_channels(cfg)
        # A step builds up to three models (the new one, the old one, the hand-over's load): the
        # input is said once per run.
        said = (channels, channels > IN_CHANNELS)
        if said not in self.said_inputs:
            self.said_inputs.add(said)
            log.info("DGCNN input: %d channels (xyz, rgb, normalised xyz%s)", channels,
                     ", height above the block minimum" if channels > IN_CHANNELS else "")
        kwargs: dict[str, Any] = dict(in_channels=channels, k=m.k, dropout=m.dropout)
        if m.knn_chunk is not None:
            kwargs["knn_chunk"] = m.knn_chunk
        return build_model(classes_per_step, **kwargs)

    # DGCNN trains from random weights in 3DPC-CISS: load_pretrained keeps the protocol's default.

    def import_weights(self, model: torch.nn.Module, path: str) -> Any:
        """A css step checkpoint, or the 3DPC-CISS pair 'BACKBONE[,CLASSIFIER]' (the classifier file
        defaults to the backbone's name with ``_classifer`` before ``_checkpoint``, as released)."""
        from css import checkpoint as ck

        parts = [p for p in str(path).split(",") if p]
        first = Path(parts[0])
        if len(parts) == 1 and first.is_file():
            obj = ck.load_file(first)
            if isinstance(obj, dict) and obj.get("format") == ck.FORMAT:
                model.load_state_dict(obj["model"], strict=True)
                return f"css checkpoint of step {obj.get('step')}"
        if len(parts) == 1:
            name = first.name
            if "_checkpoint" not in name:
                raise CheckpointError(
                    f"--init-step0 {path}: not a css checkpoint, and no classifier file can be derived from the "
                    f"name; pass 'BACKBONE,CLASSIFIER' (e.g. end_base_model_checkpoint.tar,"
                    f"end_base_model_classifer_checkpoint.tar)")
            parts.append(str(first.with_name(name.replace("_checkpoint", "_classifer_checkpoint", 1))))
        if len(parts) != 2:
            raise CheckpointError(f"--init-step0 {path}: give one css checkpoint or 'BACKBONE,CLASSIFIER'")
        from css.pointcloud.weights import load_3dpc_ciss_weights

        return load_3dpc_ciss_weights(model, parts[0], parts[1])

    # ------------------------------------------------------------------------------------------
    def store(self, cfg, split: str):
        """One BlockStore per (dataset, root, split, options, unit) for the life of a run: every step's
        subset is derived from its counts in memory."""
        from css.pointcloud.data import open_split

        d = cfg.data
        key = (d.dataset, str(d.root), split, repr(d.options), d.unit)
        if key not in self._stores:
            self._stores[key] = open_split(d.dataset, d.root, split, options=d.options or None, unit=d.unit)
        return self._stores[key]

    def dataset(self, cfg, task: Task, step: int, split: str):
        from css.pointcloud.data import build_dataset

        d = cfg.data
        train = split == "train"
        if scene_units(cfg):
            from css.pointcloud.scenes.data import build_scene_dataset

            return build_scene_dataset(
                d.dataset, d.root, task=task, step=step, split=split, voxel_size=d.voxel_size,
                max_points=d.max_points if train else None, crop_mode=d.crop, augment=train and d.augment,
                seed=None if train else d.eval_seed, protocol=cfg.protocol, overlap=d.overlap,
                presence=(d.presence_fraction, d.presence_min_points), store=self.store(cfg, split),
                options=d.options or None)
        return build_dataset(
            d.dataset, d.root, task=task, step=step, split=split, num_points=d.num_points,
            augment=train and d.augment, seed=None if train else d.eval_seed, protocol=cfg.protocol,
            overlap=d.overlap, presence=(d.presence_fraction, d.presence_min_points),
            store=self.store(cfg, split), options=d.options or None, height_feature=d.height_feature)

    def eval_mode_from_epoch(self, cfg) -> int | None:
        legacy = cfg.train.legacy_eval_mode
        if legacy is None:  # a quirk of the 3DPC-CISS code: whole scenes have no reference to follow
            legacy = cfg.protocol == "reference" and not scene_units(cfg)
        return LEGACY_EVAL_EPOCH if legacy else None

    def selects_best_on_test(self, cfg, num_steps: int) -> bool:
        """Joint training (a one-step task) under protocol reference keeps the epoch with the best test
        mIoU, as the 3DPC-CISS code does (docs/pointcloud-baselines.md#joint-training)."""
        return cfg.protocol == "reference" and num_steps == 1 and not scene_units(cfg)

    def prepare_old_model(self, cfg, old_model: torch.nn.Module) -> None:
        """3DPC-CISS runs the old model with single-pass MC dropout, its masks seeded per sample
        (docs/pointcloud-ciss.md#wiring)."""
        from css.pointcloud.methods import CISS

        if getattr(getattr(cfg, "method", None), "name", None) == CISS:
            old_model.mc_dropout(True, seeded=True)

    def evaluate(self, model: torch.nn.Module, dataset, cfg, task: Task, step: int, env):
        from css.config.schema import step_value
        from css.engine.trainer import evaluate

        batch = cfg.train.eval_batch_size or step_value(cfg, "batch_size", step)
        if scene_units(cfg):
            from css.pointcloud.scenes.evaluation import evaluate_scenes

            cm = evaluate_scenes(model, dataset, num_classes=task.num_classes(step), env=env, batch_size=batch,
                                 precision=cfg.train.precision, rotations=cfg.data.tta_rotations,
                                 desc=f"step {step} test", predict=class_predictor(task, step))
            log.info("step %d test: every point of %d scenes (%d points, %d forward passes)", step, cm.blocks,
                     cm.points, cm.forwards)
            return cm
        cm = evaluate(model, dataset, num_classes=task.num_classes(step), env=env, batch_size=batch,
                      precision=cfg.train.precision, protocol=cfg.protocol, num_workers=cfg.data.num_workers,
                      collate=self.collate, desc=f"step {step} test",
                      drop_last=cfg.protocol == "reference", predict=class_predictor(task, step))
        cm.metric = "sampled"
        if cfg.data.full_coverage:
            # the recorder (css.results.recording) writes it next to the sampled figures under its own name
            cm.full = self.evaluate_full(model, dataset, cfg, task, step, env)
        return cm

    def write_samples(self, model: torch.nn.Module, dataset, cfg, task: Task, step: int, env, out):
        if scene_units(cfg):
            from css.config.schema import step_value
            from css.pointcloud.scenes.samples import write_scene_samples

            batch = cfg.train.eval_batch_size or step_value(cfg, "batch_size", step)
            return write_scene_samples(model, dataset, task=task, step=step, device=env.device, out=out,
                                       batch_size=batch, precision=cfg.train.precision)
        from css.pointcloud.samples import write_samples

        return write_samples(model, dataset, task=task, step=step, device=env.device, out=out)

    def evaluate_full(self, model: torch.nn.Module, dataset, cfg, task: Task, step: int, env):
        """Every point of every test block predicted (docs/pointcloud-evaluation.md#full-coverage); none
        on whole scenes, whose metric already scores every point."""
        if scene_units(cfg):
            return None
        from css.config.schema import step_value
        from css.pointcloud.coverage import evaluate_full

        batch = cfg.train.eval_batch_size or step_value(cfg, "batch_size", step)
        cm = evaluate_full(model, dataset, num_classes=task.num_classes(step), env=env, batch_size=batch,
                           seed=cfg.data.eval_seed, precision=cfg.train.precision,
                           predict=class_predictor(task, step))
        log.info("step %d full coverage: %d points of %d blocks in %d samples", step, cm.points, cm.blocks,
                 cm.samples)
        return cm

    # ------------------------------------------------------------------------------------------
    def inspect(self, dataset: str, root: str | None, spec: Any, *, overlap: bool, options: dict | None, protocol: str,
                cache_dir: str | None, cfg=None) -> str:
        """The report of a prepared point-cloud dataset: blocks and points per class per step
        (from the counts stored by the preparation; no point is read)."""
        from css.pointcloud.data import dataset_summary, format_summary, load_dataset_task, open_split
        from css.tasks.task import SPLITS

        presence = (cfg.data.presence_fraction, cfg.data.presence_min_points) if cfg is not None else (0.05, 100)
        task = load_dataset_task(dataset, spec, root=root, options=options)
        # a scene config is inspected on its whole scenes (docs/pointcloud-scenes.md#data)
        unit = cfg.data.unit if cfg is not None else "block"
        stores = {split: open_split(dataset, root, split, options=options, unit=unit) for split in SPLITS}
        rows = dataset_summary(dataset, root, task=task, protocol=protocol, overlap=overlap, presence=presence,
                               options=options, stores=stores)
        setting = "overlap" if overlap else "disjoint"
        return "\n".join([task.describe(), f"dataset {dataset}, {setting} setting, protocol {protocol}", "",
                          format_summary(rows, unit)])

    def add_predict_arguments(self, inputs, parser) -> None:
        from css.pointcloud.predict import add_arguments

        inputs.add_argument("--clouds", nargs="+", help="point clouds (point-cloud models): prepared split files "
                            "(.h5), scans (.npz, .ply, .las, .laz) and/or folders of them")
        inputs.add_argument("--split", choices=("train", "test"),
                            help="point clouds: the prepared split of the checkpoint's config (data.dataset, data.root)")
        add_arguments(parser)

    def predict(self, args, cfg, load) -> int:
        from css.pointcloud.predict import run

        return run(args, cfg, load)
