"""The ``method`` section of a config (docs/config.md#sections, docs/methods.md#config-keys).

Every field but ``name`` defaults to null, which means "the preset's value" (css.methods fills them).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MethodConfig:
    """Loss recipe of a step. ``name`` selects a preset (css.methods); every other field left null is
    filled by the preset, and a value given by the user is never overwritten."""

    name: str = "lgkd"
    classification: str | None = None
    """ce | unce | bce."""
    loss_kd: float | None = None
    kd: str | None = None
    """kd | unkd | lgkd | soft (lwf-3dpc only) | none."""
    kd_resolution: str | None = None
    """small (stride-16 logits with nearest-sampled labels, docs/protocol-2d-losses.md#lgkd) | full."""
    alpha: float | None = None
    prev_kd: float | None = None
    novel_kd: float | None = None
    loss_de: float | None = None
    icarl_importance: float | None = None
    regularizer: str | None = None
    """ewc | rw | pi | none."""
    reg_importance: float | None = None
    reg_alpha: float | None = None
    reg_iterations: int | None = None
    reg_normalize: bool | None = None
    reg_per_tensor: bool | None = None
    """Min-max normalise each parameter tensor's importance on its own (the 3DPC-CISS EWC*) instead of
    all jointly; null = false (docs/pointcloud-baselines.md#ewc)."""
    reg_skip_classifier: bool | None = None
    """Leave the classifier heads (``cls.*``) out of the regulariser (the 3DPC-CISS EWC*); null = false."""
    pod: str | None = None
    """local | none."""
    pod_factor: float | None = None
    pod_logits: bool | None = None
    pod_logits_factor: float | None = None
    pod_schedule: bool | None = None
    pod_scales: list[int] | None = None
    """Local POD tilings per axis, [1, 2, 4] in the reference; small maps need fewer."""
    pseudo: str | None = None
    """entropy | none."""
    pseudo_threshold: float | None = None
    pseudo_bins: int | None = None
    adaptive_factor: bool | None = None
    init_balanced: bool | None = None
    freeze_body: bool | None = None
    """Freeze and add (docs/pointcloud-baselines.md#freeze-and-add): at an incremental step only the
    new head learns; the body and the old heads keep model(t-1)'s weights and stay in eval mode."""
    separate_classifier: bool | None = None
    """Point clouds, FT/F&A/EWC: train a separate [background, novel] classifier and keep the old class
    rows as they were, as the 3DPC-CISS baselines do (docs/pointcloud-baselines.md#separate-classifier);
    null = false."""
    # 3DPC-CISS (method 3dpc-ciss, docs/pointcloud-ciss.md#configuration); null = from the
    # preset, the dataset and the protocol.
    ciss_threshold: float | None = None
    """Uncertainty threshold tau; null = 0.0065 on S3DIS, 0.0045 on ScanNet (S3DIS's elsewhere)."""
    ciss_neighbours: int | None = None
    """K: neighbours per point (the point itself included) for uncertainty and propagation; null = 12."""
    ciss_centres: int | None = None
    """Farthest-point-sampled centres per block of the GFT loss; null = ceil(N / 4) (512 for N = 2048)."""
    ciss_gft_neighbours: int | None = None
    """Points per GFT centre (itself included); null = 12."""
    ciss_gft_weight: float | None = None
    """Weight of the GFT loss; null = 1."""
    ciss_pooled_neighbours: bool | None = None
    """Neighbours searched over the whole batch pooled (the published code); null = on under reference."""
    ciss_reference_offset: bool | None = None
    """Propagated labels off by one (the published code); null = on under reference."""
    ciss_overwrite_novel: bool | None = None
    """Uncertain novel ground truth overwritten by propagation (the published code); null = on under reference."""
    ciss_reference_nan: bool | None = None
    """No epsilon in the neighbour weights (NaN -> certain, the published code); null = on under reference."""
    ciss_reference_unannotated: bool | None = None
    """Propagated background -> ignored (the published ScanNet layout); null = on under reference on ScanNet."""
    # LwF as the 3DPC-CISS paper ran it (method lwf-3dpc, docs/pointcloud-baselines.md#lwf-3dpc).
    lwf_temperature: float | None = None
    """Temperature T of lwf-3dpc's distillation (the loss is multiplied by T squared); null = 2."""
    lwf_reference_background: bool | None = None
    """Background points trained as the last old class (the published code); null = on under reference."""
