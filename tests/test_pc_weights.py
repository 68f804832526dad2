"""Import of 3DPC-CISS DGCNN weights (css.pointcloud.weights).

The files are made here by an independent module in the 3DPC-CISS layout (plain torch
Conv/BatchNorm/LeakyReLU Sequentials with the released key names), whose logits are computed by
hand in eval mode, so the import is checked against what the released model computes.
"""

import pytest
import torch
from torch import nn

from css.errors import CheckpointError
from css.pointcloud.models import build_model
from css.pointcloud.weights import load_3dpc_ciss_weights

N_POINTS, K = 64, 20


def block(conv, c_in, c_out, bias=False):
    norm = nn.BatchNorm2d if conv is nn.Conv2d else nn.BatchNorm1d
    return [conv(c_in, c_out, 1, bias=bias), norm(c_out), nn.LeakyReLU(0.2)]


class Layered(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layer = nn.Sequential(*layers)


class ReferenceBackbone(nn.Module):
    """encoder.edge_convs.{0,1,2}.layer, encoder.conv.layer, segmentor: the released names."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Module()
        self.encoder.edge_convs = nn.ModuleList(
            Layered(block(nn.Conv2d, 2 * c, 64) + block(nn.Conv2d, 64, 64)) for c in (9, 64, 64)
        )
        self.encoder.conv = Layered(block(nn.Conv1d, 192, 512) + block(nn.Conv1d, 512, 256))
        self.segmentor = nn.Sequential(*block(nn.Conv1d, 448, 256), *block(nn.Conv1d, 256, 128, bias=True),
                                       nn.Dropout(0.3))

    def features(self, x):
        """(B, 9, N) -> (B, 128, N) in eval mode: kNN by brute force, edge features, max over k."""
        outs = []
        for ec in self.encoder.edge_convs:
            pts = x.transpose(1, 2)  # (B, N, C)
            dist = torch.cdist(pts, pts)
            idx = dist.topk(K, dim=2, largest=False).indices  # (B, N, K)
            nbr = torch.stack([pts[b][idx[b]] for b in range(x.shape[0])])  # (B, N, K, C)
            ctr = pts.unsqueeze(2).expand_as(nbr)
            edge = torch.cat([nbr - ctr, ctr], dim=3).permute(0, 3, 1, 2)
            x = ec.layer(edge).max(dim=3).values
            outs.append(x)
        local = torch.cat(outs, dim=1)
        glob = self.encoder.conv.layer(local).max(dim=2, keepdim=True).values
        return self.segmentor(torch.cat([local, glob.expand(-1, -1, local.shape[2])], dim=1))


def make_reference(seed=0):
    torch.manual_seed(seed)
    ref = ReferenceBackbone()
    for m in ref.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            n = m.num_features
            m.running_mean.copy_(0.2 * torch.randn(n))
            m.running_var.copy_(0.5 + torch.rand(n))
            m.num_batches_tracked.fill_(777)
            with torch.no_grad():
                m.weight.copy_(0.5 + torch.rand(n))
                m.bias.copy_(0.1 * torch.randn(n))
    return ref.eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ciss")
    ref = make_reference()
    sd = ref.state_dict()
    assert len(sd) == 61
    torch.save({"params": sd}, tmp / "end_base_model_checkpoint.tar")
    weight = 0.1 * torch.randn(13, 128, 1)
    torch.save({"params": {"classifer_weights": weight}}, tmp / "classifier.tar")
    x = torch.randn(2, 9, N_POINTS)
    with torch.no_grad():
        logits = torch.einsum("bcn,kc->bkn", ref.features(x), weight[:, :, 0])
    return {"dir": tmp, "backbone": tmp / "end_base_model_checkpoint.tar", "classifier": tmp / "classifier.tar",
            "x": x, "logits": logits, "state": sd}


def test_classifier_with_background_maps_row_for_row(files):
    model = build_model([13])
    report = load_3dpc_ciss_weights(model, files["backbone"], files["classifier"])
    assert report.loaded == 61 and report.missing == [] and report.unexpected == []
    assert report.classifier_rows == 13 and report.background == "loaded"
    assert model.encoder.edge_convs[0].layer[1].num_batches_tracked.item() == 777
    with torch.no_grad():
        logits = model.eval()(files["x"]).logits
    torch.testing.assert_close(logits, files["logits"], rtol=1e-5, atol=1e-5)


def test_classifier_without_background_goes_to_channels_1_on(files):
    model = build_model([13, 1])  # bg + 12 base classes, then one new class: 14 channels
    report = load_3dpc_ciss_weights(model, files["backbone"], files["classifier"])
    assert report.background == "zeroed" and "background channel 0 set to zero" in str(report)
    assert torch.equal(model.cls[0].weight[0], torch.zeros(128, 1))
    with torch.no_grad():
        logits = model.eval()(files["x"]).logits
    assert logits.shape == (2, 14, N_POINTS)
    torch.testing.assert_close(logits[:, 1:], files["logits"], rtol=1e-5, atol=1e-5)
    assert torch.equal(logits[:, 0], torch.zeros(2, N_POINTS))


def test_backbone_only(files):
    model = build_model([5])
    before = model.cls[0].weight.detach().clone()
    report = load_3dpc_ciss_weights(model, files["backbone"])
    assert report.background == "untouched" and torch.equal(model.cls[0].weight, before)


def test_wrong_key_is_an_error_naming_the_file_and_key(files):
    sd = dict(files["state"])
    sd["encoder.edge_convs.0.layer.9.weight"] = sd.pop("encoder.edge_convs.0.layer.3.weight")
    path = files["dir"] / "renamed.tar"
    torch.save({"params": sd}, path)
    model = build_model([13])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="renamed.tar") as err:
        load_3dpc_ciss_weights(model, path, files["classifier"])
    assert "encoder.edge_convs.0.layer.3.weight" in str(err.value)
    assert "encoder.edge_convs.0.layer.9.weight" in str(err.value)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # nothing written
    report = load_3dpc_ciss_weights(model, path, files["classifier"], strict=False)
    assert report.missing == ["encoder.edge_convs.0.layer.3.weight"]
    assert report.unexpected == ["encoder.edge_convs.0.layer.9.weight"]
    assert report.loaded == 60


def test_other_errors(files):
    model = build_model([10])
    with pytest.raises(CheckpointError, match="13 rows but the model has 10 channels"):
        load_3dpc_ciss_weights(model, files["backbone"], files["classifier"])
    garbage = files["dir"] / "garbage.tar"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="garbage.tar"):
        load_3dpc_ciss_weights(model, garbage)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_3dpc_ciss_weights(model, files["dir"] / "missing.tar")
    sd = dict(files["state"])
    sd["segmentor.0.weight"] = torch.zeros(256, 447, 1)
    torch.save({"params": sd}, files["dir"] / "shape.tar")
    with pytest.raises(CheckpointError, match="segmentor.0.weight"):
        load_3dpc_ciss_weights(model, files["dir"] / "shape.tar")
    torch.save({"params": {"weights": torch.zeros(10, 128, 1)}}, files["dir"] / "nocls.tar")
    with pytest.raises(CheckpointError, match="classifer_weights"):
        load_3dpc_ciss_weights(model, files["backbone"], files["dir"] / "nocls.tar")
    torch.save([1, 2], files["dir"] / "list.tar")
    with pytest.raises(CheckpointError, match="list.tar"):
        load_3dpc_ciss_weights(model, files["dir"] / "list.tar")


def test_modality_import_finds_the_released_classifier_file(files):
    """--init-step0 end_base_model_checkpoint.tar: the classifier file is the released sibling
    end_base_model_classifer_checkpoint.tar; 'BACKBONE,CLASSIFIER' names it explicitly."""
    import shutil

    from css.errors import CheckpointError
    from css.pointcloud.modality import PointCloudModality

    sibling = files["dir"] / "end_base_model_classifer_checkpoint.tar"
    shutil.copy(files["classifier"], sibling)
    for path in (str(files["backbone"]), f"{files['backbone']},{files['classifier']}"):
        model = build_model([13])
        PointCloudModality().import_weights(model, path)
        with torch.no_grad():
            torch.testing.assert_close(model.eval()(files["x"]).logits, files["logits"], rtol=1e-5, atol=1e-5)
    with pytest.raises(CheckpointError, match="BACKBONE,CLASSIFIER"):
        PointCloudModality().import_weights(build_model([13]), str(files["classifier"]))
