"""Train the shapes SSD (bench/detector/model.py) and export it for kiln.

    python3 bench/detector/train.py --out OUT_DIR          # CUDA, bf16 autocast
    python3 bench/detector/train.py --smoke --out /tmp/x   # CPU, tiny, < 2 minutes

Steps: generate the train set (seed shapes.TRAIN_SEED) into memory with all cores and
put it on the device as uint8; train with AdamW (linear warm-up, cosine decay) on
random batches and SSD's loss (smooth L1 on matched anchors + cross-entropy with
hard-negative mining 3:1); save OUT/detector.pt; write the validation set (seed
shapes.VAL_SEED) as OUT/val/images/*.png + annotations.json; evaluate the torch model
on it with the graph's own decode and NMS settings (OUT/torch_detections.json, COCO mAP
from coco_eval.py); export OUT/detector_bn.onnx (BatchNormalization kept) and
OUT/detector_folded.onnx (folded), their .prenms.onnx, and detector.preprocess.json;
check onnxruntime against torch on the pre-NMS models. OUT/train_log.json has it all.

Seeds: --seed (default 0) fixes initialization, batch order and augmentation; data
seeds are shapes.TRAIN_SEED / VAL_SEED. cuDNN autotuning is on, so GPU runs are
repeatable only up to floating-point summation order.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import coco_eval  # noqa: E402
import export as E  # noqa: E402
import model as M  # noqa: E402
import shapes  # noqa: E402

NEG_POS_RATIO = 3
IOU_POSITIVE = 0.5


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pad_targets(boxes, classes):
    """Lists of [n,4] / [n] -> [N,G,4] float32 and [N,G] int64 (label 0 = padding)."""
    G = max(1, max(len(c) for c in classes))
    b = np.zeros((len(boxes), G, 4), np.float32)
    c = np.zeros((len(boxes), G), np.int64)
    for i, (bb, cc) in enumerate(zip(boxes, classes)):
        b[i, :len(cc)] = bb
        c[i, :len(cc)] = cc
    return torch.from_numpy(b), torch.from_numpy(c)


def match(gt_boxes, gt_labels, anchors_xyxy, anchors_cxcywh):
    """SSD matching: an anchor is positive for the ground truth box it overlaps most when
    that IoU >= 0.5; every ground truth box also takes its best anchor. Returns class
    targets [N,B] (0 = background) and regression targets [N,B,4]."""
    N, G = gt_labels.shape
    B = anchors_xyxy.shape[0]
    valid = gt_labels > 0
    iou = M.box_iou(gt_boxes, anchors_xyxy.expand(N, -1, -1))  # [N,G,B]
    iou = torch.where(valid[..., None], iou, torch.full_like(iou, -1.0))
    best_iou, best_gt = iou.max(1)  # [N,B]
    # Each real box claims its best anchor; padding rows write to a spare column B that is
    # dropped. Scatters instead of nonzero() keep the step free of host syncs.
    best_anchor = torch.where(valid, iou.argmax(2), torch.full_like(gt_labels, B))  # [N,G]
    best_iou = F.pad(best_iou, (0, 1)).scatter(1, best_anchor, 2.0)[:, :B]
    g_idx = torch.arange(G, device=gt_labels.device).expand(N, G)
    best_gt = F.pad(best_gt, (0, 1)).scatter(1, best_anchor, g_idx)[:, :B]
    labels = torch.gather(gt_labels, 1, best_gt)
    labels = torch.where(best_iou >= IOU_POSITIVE, labels, torch.zeros_like(labels))
    matched = torch.gather(gt_boxes, 1, best_gt[..., None].expand(-1, -1, 4))
    return labels, M.encode(matched, anchors_cxcywh.expand(N, -1, -1))


def ssd_loss(reg, logits, labels, reg_targets):
    """(smooth L1 over positives + CE over positives and the 3x hardest negatives) / #pos."""
    reg, logits = reg.float(), logits.float()
    pos = labels > 0
    n_pos = pos.sum(1)  # [N]
    loc = (F.smooth_l1_loss(reg, reg_targets, reduction="none").sum(-1) * pos).sum()
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
    ce = ce.view_as(labels)
    neg_ce = ce.detach().masked_fill(pos, -1.0)
    order = neg_ce.argsort(1, descending=True)
    rank = order.argsort(1)
    n_neg = torch.clamp(NEG_POS_RATIO * n_pos, max=labels.shape[1] - 1)[:, None]
    hard = rank < n_neg
    cls = (ce * (pos | hard)).sum()
    denom = n_pos.sum().clamp(min=1).float()
    return loc / denom, cls / denom


def augment(x_uint8, gen):
    """Photometric only (boxes unchanged; no flips: digits are not symmetric). x: uint8
    [N,H,W,3] -> normalized float [N,3,H,W]. Random channel order (colours are uniform,
    so this keeps the distribution), contrast and brightness."""
    N = x_uint8.shape[0]
    dev = x_uint8.device
    perms = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]], device=dev)
    p = perms[torch.randint(0, 6, (N,), generator=gen, device="cpu").to(dev)]
    x = M.normalize(x_uint8)
    x = torch.gather(x, 1, p[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3]))
    r = torch.rand(N, 2, generator=gen, device="cpu").to(dev)
    contrast = (0.75 + 0.5 * r[:, 0]).view(N, 1, 1, 1)
    bright = (0.3 * r[:, 1] - 0.15).view(N, 1, 1, 1)
    return (x * contrast + bright).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def predict(net, images, device, batch=64, amp=False):
    """Detections as the exported graph makes them: decode, softmax, per-class NMS over the
    scores above SCORE_THRESHOLD, the best MAX_DETECTIONS. Returns a COCO results list with
    image ids index + 1."""
    from torchvision.ops import batched_nms
    net.eval()
    anchors = torch.from_numpy(M.anchors_cxcywh()).to(device)
    out = []
    for s in range(0, len(images), batch):
        x = M.normalize(torch.from_numpy(images[s:s + batch]).to(device)).contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            reg, logits = net(x)
        boxes = M.decode(reg.float(), anchors)
        scores = logits.float().softmax(-1)
        for i in range(len(x)):
            sc = scores[i, :, 1:]
            b_idx, c_idx = (sc > E.SCORE_THRESHOLD).nonzero(as_tuple=True)
            sv = sc[b_idx, c_idx]
            bx = boxes[i, b_idx]
            keep = batched_nms(bx, sv, c_idx, E.IOU_THRESHOLD)[:E.MAX_DETECTIONS]
            bx, sv, cl = bx[keep].cpu().numpy(), sv[keep].cpu().numpy(), (c_idx[keep] + 1).cpu().numpy()
            bx = np.clip(bx, 0, shapes.SIZE)
            for b, v, c in zip(bx, sv, cl):
                out.append({"image_id": s + i + 1, "category_id": int(c), "score": float(v),
                            "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    return out


def lr_at(step, steps, base, warmup):
    if step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * t))


def main(argv=None):
    ap = argparse.ArgumentParser(description="Train the shapes SSD and export it to ONNX for kiln.")
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run proving the pipeline (< 2 minutes)")
    ap.add_argument("--train-count", type=int, default=32000, help="training images (seed shapes.TRAIN_SEED)")
    ap.add_argument("--val-count", type=int, default=500, help="validation images (seed shapes.VAL_SEED)")
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="data generation processes (default: all cores)")
    ap.add_argument("--device", default=None, help="default: cuda when available")
    ap.add_argument("--no-amp", action="store_true", help="train in fp32 instead of bf16 autocast")
    ap.add_argument("--max-minutes", type=float, default=6.0,
                    help="stop training early (then export) if the loop runs longer than this")
    a = ap.parse_args(argv)
    if a.smoke:
        a.train_count, a.val_count, a.steps, a.batch, a.warmup = 64, 16, 15, 8, 3
        a.device = a.device or "cpu"
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = device.type == "cuda" and not a.no_amp
    os.makedirs(a.out, exist_ok=True)
    t_start = time.time()
    info = {"args": vars(a), "device": str(device), "amp_bf16": amp, "torch": torch.__version__,
            "classes": shapes.CLASSES, "train_seed": shapes.TRAIN_SEED, "val_seed": shapes.VAL_SEED}
    log(f"device {device}{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}, "
        f"torch {torch.__version__}, bf16 autocast {amp}")

    # Data first, before CUDA is touched (the generator forks worker processes).
    t0 = time.time()
    images, boxes, classes = shapes.generate_arrays(shapes.TRAIN_SEED, a.train_count, a.workers)
    val_images, _, _ = shapes.generate_arrays(shapes.VAL_SEED, a.val_count, a.workers)
    # The validation set on disk for kiln (PNG + COCO), also before CUDA starts.
    val_dir = os.path.join(a.out, "val")
    shapes.write_dataset(shapes.VAL_SEED, a.val_count, val_dir, a.workers)
    info["data_seconds"] = time.time() - t0
    log(f"generated {a.train_count} train + {a.val_count} val images ({val_dir}) in "
        f"{info['data_seconds']:.1f} s ({sum(len(c) for c in classes)} train boxes)")

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    gen = torch.Generator().manual_seed(a.seed)
    x_all = torch.from_numpy(images).to(device)
    del images
    gt_b, gt_c = pad_targets(boxes, classes)
    gt_b, gt_c = gt_b.to(device), gt_c.to(device)
    anchors = torch.from_numpy(M.anchors_cxcywh()).to(device)
    anchors_xyxy = M.cxcywh_to_xyxy(anchors)

    net = M.ShapesSSD().to(device).to(memory_format=torch.channels_last)
    n_params = M.count_parameters(net)
    info["parameters"] = n_params
    log(f"model: {n_params} parameters ({n_params * 4 / 1e6:.2f} MB fp32), {len(anchors)} anchors")
    decay = [p for n, p in net.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in net.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.999),
                            **({"fused": True} if device.type == "cuda" else {}))

    history = []
    perm, pos = torch.randperm(a.train_count, generator=gen), 0
    t_loop = time.time()
    step = 0
    stopped_early = False
    net.train()
    for step in range(a.steps):
        if pos + a.batch > a.train_count:
            perm, pos = torch.randperm(a.train_count, generator=gen), 0
        idx = perm[pos:pos + a.batch].to(device)
        pos += a.batch
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a.steps, a.lr, a.warmup)
        x = augment(x_all[idx], gen)
        with torch.no_grad():
            labels, reg_t = match(gt_b[idx], gt_c[idx], anchors_xyxy, anchors)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            reg, logits = net(x)
        loc_loss, cls_loss = ssd_loss(reg, logits, labels, reg_t)
        loss = loc_loss + cls_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 10.0)
        opt.step()
        if step % 100 == 0 or step == a.steps - 1 or (a.smoke and step % 5 == 0):
            l, c = loc_loss.item(), cls_loss.item()
            el = time.time() - t_loop
            eta = el / (step + 1) * (a.steps - step - 1)
            history.append({"step": step, "loc": l, "cls": c, "lr": opt.param_groups[0]["lr"], "seconds": el})
            log(f"step {step:5d}/{a.steps}  loc {l:.4f}  cls {c:.4f}  lr {opt.param_groups[0]['lr']:.2e}  "
                f"{el:.0f} s elapsed, ~{eta:.0f} s left")
            if not math.isfinite(l + c):
                raise SystemExit("loss is not finite; stopping")
        if (time.time() - t_loop) / 60 > a.max_minutes:
            stopped_early = True
            log(f"--max-minutes {a.max_minutes} reached at step {step + 1}: stopping training early")
            break
    if device.type == "cuda":
        torch.cuda.synchronize()
    info.update(train_seconds=time.time() - t_loop, steps_done=step + 1, stopped_early=stopped_early,
                history=history)
    log(f"trained {step + 1} steps in {info['train_seconds']:.1f} s")
    del x_all

    net = net.float().eval()
    ck = os.path.join(a.out, "detector.pt")
    torch.save({"model": {k: v.cpu() for k, v in net.state_dict().items()}, "classes": shapes.CLASSES,
                "preprocess": M.PREPROCESS, "anchors": torch.from_numpy(M.anchors_cxcywh()), "steps": step + 1}, ck)
    log(f"checkpoint {ck}")

    # The torch model's own score on the validation set.
    with open(os.path.join(val_dir, "annotations.json")) as f:
        coco = json.load(f)
    dets = predict(net, val_images, device, amp=False)
    with open(os.path.join(a.out, "torch_detections.json"), "w") as f:
        json.dump(dets, f)
    info["torch_val"] = coco_eval.evaluate(coco, dets)
    log(f"torch fp32 on val ({a.val_count} images): mAP {info['torch_val']['mAP']:.4f}  "
        f"AP50 {info['torch_val']['AP50']:.4f}  AP75 {info['torch_val']['AP75']:.4f}")

    net_cpu = net.cpu().to(memory_format=torch.contiguous_format)
    info["export"] = E.export_all(net_cpu, a.out, check_images=val_images[:8])
    for tag in ("bn", "folded"):
        s = info["export"][tag]
        log(f"{s['path']}: {s['BatchNormalization']} BatchNormalization, {s['Conv']} Conv, "
            f"{s['bytes'] / 1e6:.2f} MB")
    log(f"onnxruntime vs torch (pre-NMS, max abs): {json.dumps(info['export']['onnxruntime_vs_torch_max_abs'])}")
    info["total_seconds"] = time.time() - t_start
    with open(os.path.join(a.out, "train_log.json"), "w") as f:
        json.dump(info, f, indent=1)
    log(f"done in {info['total_seconds']:.1f} s; summary in {os.path.join(a.out, 'train_log.json')}")


if __name__ == "__main__":
    main()
