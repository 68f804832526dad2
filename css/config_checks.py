"""Range and combination checks of a built config (docs/config.md): what the types of css.config
cannot say, e.g. a positive batch, a gamma in (0, 1], bf16 with InPlaceABN, a DGCNN k within the
points of a block. ``css.config.from_dict`` calls :func:`check_values` last."""

from __future__ import annotations

from typing import TYPE_CHECKING

from css.errors import ConfigError

if TYPE_CHECKING:  # css.config imports this module
    from css.config import Config


def check_values(cfg: Config, source: str) -> None:
    """Values a type cannot check: ranges and combinations (each error names the key and the fix)."""
    where = f"{source}: " if source else ""
    t = cfg.train
    for key in ("batch_size", "epochs", "lr_step"):
        for name, val in ((f"train.{key}", getattr(t, key)), (f"train.step0.{key}", getattr(t.step0, key, None))):
            if val is not None and val <= 0:
                raise ConfigError(f"{where}{name} must be positive, got {val}")
    if t.best_on_test_every <= 0:
        raise ConfigError(f"{where}train.best_on_test_every must be a positive number of epochs, "
                          f"got {t.best_on_test_every}")
    if t.skip_nonfinite < 0:
        raise ConfigError(f"{where}train.skip_nonfinite must be >= 0 (0: stop at the first non-finite loss), "
                          f"got {t.skip_nonfinite}")
    if not t.dist_timeout > 0:
        raise ConfigError(f"{where}train.dist_timeout must be a positive number of seconds (default 1800), "
                          f"got {t.dist_timeout}")
    if t.lr <= 0 or (t.step0.lr is not None and t.step0.lr <= 0):
        raise ConfigError(f"{where}train.lr and train.step0.lr must be positive")
    if not 0 < t.lr_gamma <= 1:
        raise ConfigError(f"{where}train.lr_gamma must be in (0, 1], got {t.lr_gamma}")
    scales = cfg.method.pod_scales
    if scales is not None and (not scales or any(s < 1 for s in scales)):
        raise ConfigError(f"{where}method.pod_scales must be a non-empty list of positive integers "
                          f"(the reference uses [1, 2, 4]), got {scales}")
    if cfg.modality == "pointcloud":
        _check_point_values(cfg, where)
        return
    if cfg.model.output_stride not in (8, 16):
        raise ConfigError(f"{where}model.output_stride must be 8 or 16, got {cfg.model.output_stride}")
    if cfg.data.crop_size <= 0:
        raise ConfigError(f"{where}data.crop_size must be positive, got {cfg.data.crop_size}")
    if t.precision == "bf16" and cfg.model.norm in ("iabn", "iabn_sync"):
        # InPlaceABN 1.1.0's kernels take float32 and float16 only; under bf16 autocast its CUDA
        # forward fails with "mean is not compatible with x" (seen on an H200, benchmarks/RESULTS.md).
        raise ConfigError(f"{where}train.precision: bf16 does not work with model.norm: {cfg.model.norm} "
                          f"(InPlaceABN has no bfloat16 kernels); use train.precision=fp16 or model.norm=bn")


def _check_point_values(cfg: Config, where: str) -> None:
    d, m = cfg.data, cfg.model
    if d.num_points <= 0:
        raise ConfigError(f"{where}data.num_points must be positive, got {d.num_points}")
    if not 0 <= d.presence_fraction < 1 or d.presence_min_points < 0:
        raise ConfigError(f"{where}data.presence_fraction must be in [0, 1) and data.presence_min_points >= 0, "
                          f"got {d.presence_fraction} and {d.presence_min_points}")
    if m.k < 1 or m.k > d.num_points:
        raise ConfigError(f"{where}model.k must be in 1..data.num_points ({d.num_points}), got {m.k}")
    if not 0 <= m.dropout < 1:
        raise ConfigError(f"{where}model.dropout must be in [0, 1), got {m.dropout}")
    if m.knn_chunk is not None and m.knn_chunk < 1:
        raise ConfigError(f"{where}model.knn_chunk must be positive or null, got {m.knn_chunk}")
    if cfg.method.pod not in (None, "none"):
        raise ConfigError(f"{where}method.pod: {cfg.method.pod!r} — Local POD distils 2-D feature maps and has "
                          f"no point-cloud form; remove method.pod (point-cloud presets leave it off)")
