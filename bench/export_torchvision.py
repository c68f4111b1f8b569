"""Exports the torchvision architectures kiln is measured on to ONNX (random
weights, BatchNorm statistics randomized), then strips the float weights so
only the graph travels: tests/models/fill_weights.py refills them from a seed.

Runs where torch + torchvision are installed (the GPU machine):
    python3 bench/export_torchvision.py OUTDIR
writes OUTDIR/<name>.onnx graphs and OUTDIR/export.json (what was exported).
"""
import json
import os
import sys

import onnx
import torch
import torchvision
from onnx import external_data_helper
from torchvision.models import detection as D


class DetNet(torch.nn.Module):
    """Backbone + head of a torchvision detector: box regressions and class logits."""

    def __init__(self, m):
        super().__init__()
        self.backbone, self.head = m.backbone, m.head

    def forward(self, x):
        feats = list(self.backbone(x).values())
        out = self.head(feats)
        return out["bbox_regression"], out["cls_logits"]


def randomize_bn(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.weight.data.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
            mod.bias.data.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return m


def models():
    torch.manual_seed(0)
    cls = (["logits"], "input")
    det = (["bbox_regression", "cls_logits"], "images")
    yield "mobilenet_v2", randomize_bn(torchvision.models.mobilenet_v2()), 224, cls, False
    yield "resnet18", randomize_bn(torchvision.models.resnet18()), 224, cls, False
    yield "resnet18_bn", randomize_bn(torchvision.models.resnet18()), 224, cls, True
    yield "resnet50", randomize_bn(torchvision.models.resnet50()), 224, cls, False
    yield "ssd300_vgg16", DetNet(D.ssd300_vgg16(weights=None, weights_backbone=None)), 300, det, False
    yield "ssdlite320_mnv3", randomize_bn(DetNet(D.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None))), 320, det, False
    yield "ssdlite320_mnv3_bn", randomize_bn(DetNet(D.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None))), 320, det, True
    yield "retinanet_r50_fpn", randomize_bn(DetNet(D.retinanet_resnet50_fpn(weights=None, weights_backbone=None))), 800, det, False


def export(name, m, hw, io, keep_bn, outdir):
    outputs, inp = io
    m = m.eval()
    x = torch.randn(1, 3, hw, hw)
    path = os.path.join(outdir, name + ".onnx")
    kw = dict(opset_version=17, input_names=[inp], output_names=outputs,
              dynamic_axes={inp: {0: "N"}, **{o: {0: "N"} for o in outputs}}, dynamo=False)
    if keep_bn:
        # PRESERVE exports eval-mode BatchNormalization as its own node instead of folding it.
        kw.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    torch.onnx.export(m, (x,), path, **kw)
    model = onnx.load(path)
    ops = {}
    for n in model.graph.node:
        ops[n.op_type] = ops.get(n.op_type, 0) + 1
    # Keep the graph only: float weights become external references to a file that is not kept.
    external_data_helper.convert_model_to_external_data(model, all_tensors_to_one_file=True,
                                                        location=name + ".weights", size_threshold=256)
    onnx.save(model, path)
    return {"name": name, "hw": hw, "ops": ops, "nodes": len(model.graph.node),
            "params": sum(p.numel() for p in m.parameters())}


def main():
    outdir = sys.argv[1]
    os.makedirs(outdir, exist_ok=True)
    info = {"torch": torch.__version__, "torchvision": torchvision.__version__, "onnx": onnx.__version__, "models": []}
    for name, m, hw, io, keep_bn in models():
        try:
            info["models"].append(export(name, m, hw, io, keep_bn, outdir))
        except Exception as ex:  # report and go on with the rest
            info["models"].append({"name": name, "error": str(ex)[:500]})
        print(json.dumps(info["models"][-1]), flush=True)
    with open(os.path.join(outdir, "export.json"), "w") as f:
        json.dump(info, f, indent=1)


if __name__ == "__main__":
    main()
