"""A small SSD-style detector for the shapes set (bench/detector/shapes.py).

Input: images [N,3,300,300] float, RGB, (pixel/255 - 0.5) / 0.5 (PREPROCESS below, the
JSON `kiln detect` reads). Outputs, in the layout bench/export_detector.py and
EfficientNMS_TRT (box_coding=1, anchors) expect:
  bbox_regression [N,B,4]  (dx, dy, dw, dh) against the anchors, scaled by BOX_WEIGHTS
  cls_logits      [N,B,C]  C = 1 + NUM_CLASSES, class 0 = background
B = 7720 anchors on four feature maps (38x38, 19x19, 10x10, 5x5; 4 anchors a location).

The network is Conv+BatchNorm+ReLU blocks only (a plain ResNet-like backbone with
residual Add, 3x3 heads with bias), about 1.3 M parameters.
"""
import math

import numpy as np
import torch
from torch import nn

from shapes import NUM_CLASSES, SIZE

BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
BBOX_XFORM_CLIP = math.log(1000.0 / 16)
PREPROCESS = {"scale": 1.0 / 255.0, "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "channel_order": "RGB"}

FEATURE_SIZES = (38, 19, 10, 5)  # 300 -> 150 -> 75 -> 38 -> 19 -> 10 -> 5 with stride-2 3x3 convs
# Anchor side (pixels) per map; the extra square anchor is sqrt(s_k * s_k+1).
ANCHOR_SIZES = (20.0, 45.0, 90.0, 160.0, 230.0)
ASPECTS = (2.0,)
ANCHORS_PER_LOC = 2 + 2 * len(ASPECTS)


def anchors_cxcywh():
    """[B,4] float32 anchors (centre x, centre y, width, height) in input pixels, ordered as
    the heads' outputs: map by map, row by row, the anchors of one location together."""
    out = []
    for k, f in enumerate(FEATURE_SIZES):
        s = ANCHOR_SIZES[k]
        s2 = math.sqrt(s * ANCHOR_SIZES[k + 1])
        wh = [(s, s), (s2, s2)]
        for a in ASPECTS:
            r = math.sqrt(a)
            wh += [(s * r, s / r), (s / r, s * r)]
        wh = np.array(wh, np.float64)
        step = SIZE / f
        c = (np.arange(f) + 0.5) * step
        cy, cx = np.meshgrid(c, c, indexing="ij")
        xy = np.stack([cx.ravel(), cy.ravel()], 1)
        out.append(np.concatenate([np.repeat(xy, len(wh), 0), np.tile(wh, (f * f, 1))], 1))
    return np.concatenate(out).astype(np.float32)


def conv_bn_relu(cin, cout, k=3, stride=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class Residual(nn.Module):
    """x + conv_bn(relu(conv_bn(x))), then ReLU."""

    def __init__(self, c):
        super().__init__()
        self.a = conv_bn_relu(c, c)
        self.b = conv_bn_relu(c, c, relu=False)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(x + self.b(self.a(x)))


class ShapesSSD(nn.Module):
    WIDTHS = (64, 128, 160, 160)

    def __init__(self, num_classes=NUM_CLASSES + 1):
        super().__init__()
        self.num_classes = num_classes
        w = self.WIDTHS
        self.stem = nn.Sequential(conv_bn_relu(3, 24, stride=2),      # 150
                                  conv_bn_relu(24, 32, stride=2),     # 75
                                  Residual(32))
        self.stage1 = nn.Sequential(conv_bn_relu(32, w[0], stride=2), Residual(w[0]), Residual(w[0]))  # 38
        self.stage2 = nn.Sequential(conv_bn_relu(w[0], w[1], stride=2), Residual(w[1]))  # 19
        self.stage3 = nn.Sequential(conv_bn_relu(w[1], w[2], stride=2), Residual(w[2]))  # 10
        self.stage4 = nn.Sequential(conv_bn_relu(w[2], 96, k=1), conv_bn_relu(96, w[3], stride=2))  # 5
        A = ANCHORS_PER_LOC
        self.reg = nn.ModuleList(nn.Conv2d(c, A * 4, 3, padding=1) for c in w)
        self.cls = nn.ModuleList(nn.Conv2d(c, A * num_classes, 3, padding=1) for c in w)
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for r in self.modules():  # residual branches start near identity
            if isinstance(r, Residual):
                nn.init.zeros_(r.b[1].weight)
        for h in list(self.reg) + list(self.cls):
            nn.init.normal_(h.weight, std=0.01)
            nn.init.zeros_(h.bias)
        # Background prior ~0.99 so early training is not swamped by negatives.
        prior = math.log(0.99 * (self.num_classes - 1) / 0.01)
        for h in self.cls:
            h.bias.data.view(ANCHORS_PER_LOC, self.num_classes)[:, 0] = prior

    def forward(self, x):
        x = self.stem(x)
        f1 = self.stage1(x)
        f2 = self.stage2(f1)
        f3 = self.stage3(f2)
        f4 = self.stage4(f3)
        regs, logits = [], []
        A, C = ANCHORS_PER_LOC, self.num_classes
        for f, s, reg, cls in zip((f1, f2, f3, f4), FEATURE_SIZES, self.reg, self.cls):
            # Sizes are Python constants so the exported Reshape has a constant shape.
            regs.append(reg(f).permute(0, 2, 3, 1).reshape(-1, s * s * A, 4))
            logits.append(cls(f).permute(0, 2, 3, 1).reshape(-1, s * s * A, C))
        return torch.cat(regs, 1), torch.cat(logits, 1)


# ---------------------------------------------------------------------------------------
# Box coding shared by training (encode) and evaluation (decode); the exported graph does
# the decode inside EfficientNMS_TRT, whose formula this mirrors.

def encode(gt_xyxy, anchors):
    """Targets (dx,dy,dw,dh)*BOX_WEIGHTS for corner boxes against centre-size anchors."""
    wx, wy, ww, wh = BOX_WEIGHTS
    gw = (gt_xyxy[..., 2] - gt_xyxy[..., 0]).clamp(min=1e-3)
    gh = (gt_xyxy[..., 3] - gt_xyxy[..., 1]).clamp(min=1e-3)
    gx = gt_xyxy[..., 0] + 0.5 * gw
    gy = gt_xyxy[..., 1] + 0.5 * gh
    ax, ay, aw, ah = anchors.unbind(-1)
    return torch.stack([wx * (gx - ax) / aw, wy * (gy - ay) / ah,
                        ww * torch.log(gw / aw), wh * torch.log(gh / ah)], -1)


def decode(reg, anchors):
    """bbox_regression [...,4] -> corner boxes [...,4] in input pixels (the graph's decode)."""
    d = reg / reg.new_tensor(BOX_WEIGHTS)
    dw = d[..., 2].clamp(max=BBOX_XFORM_CLIP)
    dh = d[..., 3].clamp(max=BBOX_XFORM_CLIP)
    ax, ay, aw, ah = anchors.unbind(-1)
    xc, yc = d[..., 0] * aw + ax, d[..., 1] * ah + ay
    w, h = torch.exp(dw) * aw, torch.exp(dh) * ah
    return torch.stack([xc - 0.5 * w, yc - 0.5 * h, xc + 0.5 * w, yc + 0.5 * h], -1)


def cxcywh_to_xyxy(a):
    return torch.cat([a[..., :2] - 0.5 * a[..., 2:], a[..., :2] + 0.5 * a[..., 2:]], -1)


def box_iou(a, b):
    """IoU of corner boxes a [...,M,4] and b [...,K,4] -> [...,M,K]."""
    area_a = (a[..., 2] - a[..., 0]).clamp(min=0) * (a[..., 3] - a[..., 1]).clamp(min=0)
    area_b = (b[..., 2] - b[..., 0]).clamp(min=0) * (b[..., 3] - b[..., 1]).clamp(min=0)
    lt = torch.maximum(a[..., :, None, :2], b[..., None, :, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[..., :, None] + area_b[..., None, :] - inter).clamp(min=1e-6)


def normalize(images_uint8_nhwc):
    """uint8 [N,H,W,3] -> float [N,3,H,W] normalized as PREPROCESS (channels-last memory)."""
    x = images_uint8_nhwc.permute(0, 3, 1, 2).float()
    mean = x.new_tensor(PREPROCESS["mean"]).view(1, 3, 1, 1)
    std = x.new_tensor(PREPROCESS["std"]).view(1, 3, 1, 1)
    return (x * PREPROCESS["scale"] - mean) / std


def count_parameters(model):
    return sum(p.numel() for p in model.parameters())
