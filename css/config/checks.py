"""Range and combination checks of a built config (docs/config.md): what the types of the sections
cannot say, e.g. a positive batch or a gamma in (0, 1]. ``css.config.build.from_dict`` calls
:func:`check_values`, then the modality's own ``check_config`` (its sections' ranges)."""

from __future__ import annotations

from css.config.schema import Config
from css.errors import ConfigError


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
