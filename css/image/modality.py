"""The image modality: DeepLabV3 models and VOC / ADE20k / folder / synthetic datasets for the
step controller (css.controller), and its inspection and predictions."""

from __future__ import annotations

import logging
from typing import Any

import torch

from css.config.schema import TrainConfig
from css.errors import CheckpointError, ConfigError
from css.image.config import CHOICES, ImageDataConfig, ImageModelConfig, check_config
from css.modality.protocol import Modality
from css.tasks.task import Task

log = logging.getLogger("css")


class ImageModality(Modality):
    name = "image"
    collate = None  # training crops and evaluation crops have one size: default collation
    config_sections = {"data": ImageDataConfig, "model": ImageModelConfig, "train": TrainConfig}
    config_choices = CHOICES
    predict_flags = ("--images",)

    def __init__(self) -> None:
        # One SplitIndex per (dataset, root, split, ...) for the life of a run: every step's
        # subset is then derived in memory (css.image.data.load_split).
        self._splits: dict[tuple, Any] = {}

    def check_config(self, cfg, where: str) -> None:
        check_config(cfg, where)

    def task(self, cfg) -> Task:
        from css.image.data import load_dataset_task
        from css.tasks.registry import task_from_config

        return task_from_config(cfg, load_dataset_task)

    def build_model(self, cfg, classes_per_step: list[int], env) -> torch.nn.Module:
        from css.image.models import build_model

        m = cfg.model
        norm = m.norm
        if env.device.type == "cpu" and env.distributed and norm == "iabn_sync":
            raise ConfigError("model.norm=iabn_sync needs CUDA tensors (InPlaceABNSync); on CPU with several "
                              "processes use model.norm=bn (pure torch, synchronised across processes)")
        return build_model(classes_per_step, backbone=m.backbone, norm=norm, output_stride=m.output_stride,
                           pooling_size=m.pooling_size, base_channels=m.base_channels,
                           head_channels=m.head_channels)

    def load_pretrained(self, model: torch.nn.Module, cfg) -> None:
        if not cfg.model.pretrained:
            return
        from pathlib import Path

        from css.image.weights import load_reference_weights

        path = Path(cfg.model.pretrained)
        if not path.is_file():
            raise CheckpointError(
                f"model.pretrained: ImageNet weights {path} not found. Download resnet101_iabn_sync.pth.tar (the "
                f"ImageNet ResNet-101 with synchronised InPlaceABN, released with the LGKD code at "
                f"https://github.com/Ze-Yang/LGKD/releases/download/v1.0/resnet101_iabn_sync.pth.tar) "
                f"into {path.parent}/, or train from random weights with model.pretrained=null")
        report = load_reference_weights(model, path)
        log.info("loaded ImageNet backbone %s (%s)", path, report)

    def import_weights(self, model: torch.nn.Module, path: str) -> Any:
        from css.image.weights import load_reference_weights

        return load_reference_weights(model, path, strict=True)

    def evaluate(self, model: torch.nn.Module, dataset, cfg, task: Task, step: int, env):
        from css.config.schema import step_value
        from css.engine.trainer import evaluate

        batch = cfg.train.eval_batch_size or step_value(cfg, "batch_size", step)
        if cfg.data.eval_mode == "whole":
            batch = env.world_size  # whole images differ in size: one per process
        return evaluate(model, dataset, num_classes=task.num_classes(step), env=env, batch_size=batch,
                        precision=cfg.train.precision, protocol=cfg.protocol, num_workers=cfg.data.num_workers,
                        collate=self.collate, desc=f"step {step} test")

    def write_samples(self, model: torch.nn.Module, dataset, cfg, task: Task, step: int, env, out):
        from css.image.samples import write_samples

        return write_samples(model, dataset, num_channels=task.num_classes(step), device=env.device, out=out)

    def dataset(self, cfg, task: Task, step: int, split: str):
        from css.image.data import build_dataset, load_split
        from css.image.transforms import eval_transform, train_transform

        d = cfg.data
        if split == "train":
            tf = train_transform(crop_size=d.crop_size, scale=tuple(d.scale))
        else:
            tf = eval_transform(mode=d.eval_mode, crop_size=d.crop_size)
        key = (d.dataset, str(d.root), split, str(d.cache_dir), repr(d.options))
        if key not in self._splits:
            self._splits[key] = load_split(d.dataset, d.root, split, cache_dir=d.cache_dir, options=d.options or None)
        return build_dataset(d.dataset, d.root, task=task, step=step, split=split, overlap=d.overlap,
                             transform=tf, index=self._splits[key])

    # ------------------------------------------------------------------------------------------
    def inspect(self, dataset: str, root: str | None, spec: Any, *, overlap: bool, options: dict | None,
                protocol: str, cache_dir: str | None, cfg=None) -> str:
        from css.image.inspect import inspect

        return inspect(dataset, root, spec, overlap=overlap, cache_dir=cache_dir, options=options,
                       from_config=cfg is not None)

    def add_predict_arguments(self, inputs, parser) -> None:
        inputs.add_argument("--images", nargs="+", help="image files and/or folders of images (image models)")
        parser.add_argument("--alpha", type=float, default=0.5, help="images: overlay opacity of the prediction (0..1)")

    def predict(self, args, cfg, load) -> int:
        from css.image.predict import run

        return run(args, load)
