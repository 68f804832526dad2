"""Every shipped config against the published script it reproduces (docs/protocol.md#hyper-parameters).

The expected values below are typed in from the published scripts, not read from the configs: the
LGKD / PLOP image scripts give per-GPU batch sizes on 2 GPUs (css batches are global, so twice
those), and the 3DPC-CISS scripts share one schedule. A config that drifts from its script fails
here, and so does a script row without a config."""

from pathlib import Path

import pytest

from css.config.build import load_config
from css.config.schema import step_value
from css.methods.resolve import resolve_method

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"

# config: (task, method, step-0 per-GPU batch, lr, epochs, steps>=1 per-GPU batch, lr, epochs, method values)
IMAGE_SCRIPTS = {
    "voc/15-1_lgkd.yaml": ("15-1", "lgkd", 8, 0.01, 30, 12, 0.001, 30, dict(prev_kd=1.0, novel_kd=0.0)),
    "voc/15-5_lgkd.yaml": ("15-5", "lgkd", 8, 0.01, 30, 12, 0.001, 30, dict(prev_kd=5.0, novel_kd=1.0)),
    "voc/19-1_lgkd.yaml": ("19-1", "lgkd", 12, 0.01, 30, 12, 0.001, 30, dict(prev_kd=5.0, novel_kd=0.5)),
    "voc/15-1_plop.yaml": ("15-1", "plop", 8, 0.01, 30, 12, 0.001, 30, {}),
    "voc/15-5_plop.yaml": ("15-5", "plop", 8, 0.01, 30, 12, 0.001, 30, {}),
    "voc/19-1_plop.yaml": ("19-1", "plop", 12, 0.01, 30, 12, 0.001, 30, {}),
    "voc/10-1_plop.yaml": ("10-1", "plop", 8, 0.01, 30, 12, 0.001, 10, {}),
    "voc/15-1_mib.yaml": ("15-1", "mib", 12, 0.01, 30, 12, 0.001, 30, dict(loss_kd=10.0, kd="unkd")),
    "voc/joint.yaml": ("offline", "ft", 8, 0.01, 30, None, None, None, {}),
    "ade/100-50_lgkd.yaml": ("100-50", "lgkd", 6, 0.02, 60, 6, 0.002, 60, dict(prev_kd=1.0, novel_kd=20.0)),
    "ade/100-10_lgkd.yaml": ("100-10", "lgkd", 8, 0.02, 60, 8, 0.002, 60, dict(prev_kd=1.0, novel_kd=1.0)),
    "ade/50-50_lgkd.yaml": ("50-50", "lgkd", 6, 0.02, 60, 6, 0.002, 60, dict(prev_kd=2.0, novel_kd=10.0)),
    "ade/100-50_plop.yaml": ("100-50", "plop", 6, 0.02, 60, 6, 0.002, 60, {}),
    "ade/100-10_plop.yaml": ("100-10", "plop", 8, 0.02, 60, 8, 0.002, 60, {}),
    "ade/100-5_plop.yaml": ("100-5", "plop", 6, 0.02, 60, 6, 0.002, 60, {}),
    "ade/50-50_plop.yaml": ("50-50", "plop", 6, 0.02, 60, 6, 0.002, 60, {}),
    "ade/joint.yaml": ("offline", "ft", 8, 0.02, 60, None, None, None, {}),
}
GPUS = 2
# POD factors (maps, logits) the published runs use: the LGKD ADE scripts switch to PLOP's ADE
# factors, the PLOP preset of that code keeps the VOC ones on ADE too.
POD = {("voc", "lgkd"): (0.01, 0.0005), ("voc", "plop"): (0.01, 0.0005),
       ("ade", "lgkd"): (0.001, 0.00001), ("ade", "plop"): (0.01, 0.0005)}


@pytest.mark.parametrize("name", sorted(IMAGE_SCRIPTS))
def test_image_config_matches_its_script(name):
    task, method, b0, lr0, e0, b, lr, e, values = IMAGE_SCRIPTS[name]
    cfg = load_config(CONFIGS / name)
    assert cfg.protocol == "reference" and cfg.data.overlap is True
    assert (cfg.task.name, cfg.method.name) == (task, method)
    assert (cfg.data.crop_size, cfg.model.output_stride, cfg.model.backbone, cfg.model.norm) == \
        (512, 16, "resnet101", "iabn_sync")
    assert cfg.train.precision == "fp16"  # apex O1 in the scripts
    assert (step_value(cfg, "batch_size", 0), step_value(cfg, "lr", 0), step_value(cfg, "epochs", 0)) == \
        (GPUS * b0, lr0, e0)
    if b is not None:
        assert (step_value(cfg, "batch_size", 1), step_value(cfg, "lr", 1), step_value(cfg, "epochs", 1)) == \
            (GPUS * b, lr, e)
    resolved = resolve_method(cfg.method, dataset=cfg.data.dataset, protocol=cfg.protocol)
    for key, want in values.items():
        assert getattr(resolved, key) == want, key
    if (cfg.data.dataset, method) in POD:
        assert (resolved.pod_factor, resolved.pod_logits_factor) == POD[cfg.data.dataset, method]


def test_every_image_config_has_a_script_row():
    shipped = {p.relative_to(CONFIGS).as_posix() for d in ("voc", "ade") for p in (CONFIGS / d).glob("*.yaml")}
    assert shipped - {"voc/base.yaml", "ade/base.yaml"} == set(IMAGE_SCRIPTS)


# 3DPC-CISS: Adam 1e-3 with weight decay 1e-4, StepLR(50, 0.5), 100 epochs and batch 32 at every
# step, 2048 points per block, DGCNN k 20 with dropout 0.3; EWC* weight 1; LwF* temperature 2 and
# weight 1, background points trained as the last base class; uncertainty thresholds 0.0065 (S3DIS)
# and 0.0045 (ScanNet).
THRESHOLD = {"s3dis": 0.0065, "scannet": 0.0045}


@pytest.mark.parametrize("path", sorted((CONFIGS / "s3dis").glob("*.yaml")) + sorted((CONFIGS / "scannet").glob("*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_point_cloud_config_matches_the_3dpc_ciss_schedule(path):
    cfg = load_config(path)
    t = cfg.train
    assert cfg.protocol == "reference" and cfg.modality == "pointcloud"
    for step in (0, 1):
        assert (step_value(cfg, "batch_size", step), step_value(cfg, "lr", step), step_value(cfg, "epochs", step)) == \
            (32, 0.001, 100)
    assert (t.optimizer, t.weight_decay, t.schedule, t.lr_step, t.lr_gamma) == ("adam", 0.0001, "step", 50, 0.5)
    assert (cfg.data.num_points, cfg.model.k, cfg.model.dropout) == (2048, 20, 0.3)
    resolved = resolve_method(cfg.method, dataset=cfg.data.dataset, protocol=cfg.protocol, modality="pointcloud")
    if resolved.name == "ewc":
        assert (resolved.reg_importance, resolved.reg_alpha, resolved.reg_normalize) == (1.0, 0.9, True)
        assert resolved.reg_per_tensor is True and resolved.reg_skip_classifier is True
    if resolved.name == "3dpc-ciss":
        assert resolved.ciss_threshold == THRESHOLD[cfg.data.dataset]
    if resolved.name == "fa":
        assert resolved.freeze_body is True
    # FT, F&A and EWC* train a separate [background, novel] classifier there.
    assert resolved.separate_classifier is path.stem.endswith(("_ft", "_fa", "_ewc"))
    if path.stem.endswith("_lwf"):
        assert (resolved.name, resolved.lwf_temperature, resolved.loss_kd) == ("lwf-3dpc", 2.0, 1.0)
        assert resolved.lwf_reference_background is True
