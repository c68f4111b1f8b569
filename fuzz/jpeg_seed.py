"""A small JPEG encoder for the image_decode_fuzz seeds (see image_seeds.py).

Baseline (SOF0) or progressive (SOF2, spectral selection: one DC scan, then
one AC scan a component), greyscale or YCbCr at 4:4:4 or 4:2:0, optionally
with a restart marker after every MCU. Huffman tables are built from each
image's own symbol counts, so the code lengths vary as in real files.
"""
import heapq
import math
import struct

import numpy as np

# Annex K luminance table, scaled to quality 90: fine enough that the decoded
# pattern stays within a few levels of the original.
_QBASE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)
QTABLE = np.clip((_QBASE * 20 + 50) // 100, 1, 255)


def _zigzag():
    order = sorted(((y, x) for y in range(8) for x in range(8)),
                   key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 == 0 else p[0]))
    return [y * 8 + x for y, x in order]


ZIGZAG = _zigzag()
_C = np.array([[(math.sqrt(0.5) if u == 0 else 1.0) * math.cos((2 * x + 1) * u * math.pi / 16) / 2
                for x in range(8)] for u in range(8)])


def _blocks(plane, bw, bh):
    """Quantized zigzag coefficient blocks of a plane padded to bw x bh blocks (edge repeated)."""
    h, w = plane.shape
    p = np.pad(plane.astype(np.float64), ((0, bh * 8 - h), (0, bw * 8 - w)), mode="edge") - 128
    out = {}
    for by in range(bh):
        for bx in range(bw):
            coef = _C @ p[by * 8:by * 8 + 8, bx * 8:bx * 8 + 8] @ _C.T
            q = np.round(coef / QTABLE).astype(int).reshape(-1)
            out[by, bx] = [int(q[i]) for i in ZIGZAG]
    return out


def _category(v):
    return 0 if v == 0 else int(abs(v)).bit_length()


def _bits(v, n):
    return v if v >= 0 else v + (1 << n) - 1


def _huffman(counts):
    """(bits[16], values) of a canonical JPEG table for symbol counts. A reserved
    symbol of count 1 takes the all-ones code, which JPEG forbids."""
    heap = [(c, i, [s]) for i, (s, c) in enumerate(sorted(counts.items()))] + [(1, -1, [256])]
    heapq.heapify(heap)
    length = {s: 0 for s in list(counts) + [256]}
    if len(heap) == 1:
        length[256] = 1
    while len(heap) > 1:
        c1, i1, s1 = heapq.heappop(heap)
        c2, i2, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            length[s] += 1
        heapq.heappush(heap, (c1 + c2, min(i1, i2), s1 + s2))
    assert max(length.values()) <= 16, "seed image too varied for an unlimited Huffman build"
    assert length[256] == max(length.values()), "the reserved code must be a longest one"
    order = sorted(length, key=lambda s: (length[s], s == 256, s))
    bits = [0] * 16
    for s in order:
        bits[length[s] - 1] += 1
    bits[length[256] - 1] -= 1
    return bits, [s for s in order if s != 256]


def _codes(table):
    bits, values = table
    codes, code, k = {}, 0, 0
    for n in range(1, 17):
        for _ in range(bits[n - 1]):
            codes[values[k]] = (code, n)
            code += 1
            k += 1
        code <<= 1
    return codes


class _BitWriter:
    def __init__(self):
        self.out, self.acc, self.n = bytearray(), 0, 0

    def put(self, v, n):
        for i in range(n - 1, -1, -1):
            self.acc = (self.acc << 1) | ((v >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)  # byte stuffing
                self.acc, self.n = 0, 0

    def flush(self):
        if self.n:
            self.put((1 << (8 - self.n)) - 1, 8 - self.n)  # pad with one bits


def _dc_symbols(diff):
    n = _category(diff)
    return [(n, _bits(diff, n), n)]


def _ac_symbols(block, start=1):
    out, run = [], 0
    last = max([i for i in range(start, 64) if block[i]] or [start - 1])
    for i in range(start, last + 1):
        if block[i] == 0:
            run += 1
            continue
        while run > 15:
            out.append((0xF0, 0, 0))
            run -= 16
        n = _category(block[i])
        out.append(((run << 4) | n, _bits(block[i], n), n))
        run = 0
    if last < 63:
        out.append((0x00, 0, 0))  # end of block (EOB0 in a progressive scan)
    return out


def _segment(marker, payload):
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def jpeg(img, grey=False, subsample=False, progressive=False, restart=False, declared=None):
    """img: RGB uint8 [h, w, 3]. `declared` writes another (w, h) into the frame header."""
    h, w, _ = img.shape
    f = img.astype(np.float64)
    y = 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]
    planes = [np.clip(np.round(y), 0, 255)]
    if not grey:
        cb = -0.168736 * f[..., 0] - 0.331264 * f[..., 1] + 0.5 * f[..., 2] + 128
        cr = 0.5 * f[..., 0] - 0.418688 * f[..., 1] - 0.081312 * f[..., 2] + 128
        planes += [np.clip(np.round(cb), 0, 255), np.clip(np.round(cr), 0, 255)]
    hs = 2 if subsample and not grey else 1
    mcux, mcuy = -(-w // (8 * hs)), -(-h // (8 * hs))
    comps = []  # (id, sampling, blocks dict, own block grid width, height)
    for i, p in enumerate(planes):
        s = hs if i == 0 else 1
        if i and hs == 2:  # 2x2 average for the chroma planes
            p = np.pad(p, ((0, h % 2), (0, w % 2)), mode="edge")
            p = np.round((p[0::2, 0::2] + p[1::2, 0::2] + p[0::2, 1::2] + p[1::2, 1::2]) / 4)
        comps.append((i + 1, s, _blocks(p, mcux * s, mcuy * s), -(-p.shape[1] // 8), -(-p.shape[0] // 8)))

    # Scans as lists of (component index, block list, spectral start, end).
    def interleaved(ss, se):
        units = []
        for my in range(mcuy):
            for mx in range(mcux):
                units.append([(k, c[2][my * c[1] + dy, mx * c[1] + dx]) for k, c in enumerate(comps)
                              for dy in range(c[1]) for dx in range(c[1])])
        return (list(range(len(comps))), units, ss, se)

    if progressive:
        scans = [interleaved(0, 0)]
        for k, c in enumerate(comps):  # a one-component scan walks the component's own grid
            scans.append(([k], [[(k, c[2][by, bx])] for by in range(c[4]) for bx in range(c[3])], 1, 63))
    else:
        scans = [interleaved(0, 63)]

    # Symbols per scan unit, then one DC and one AC table a component class.
    cls = lambda k: 0 if k == 0 else 1  # noqa: E731  luminance / chrominance tables
    streams, dc_counts, ac_counts = [], [{}, {}], [{}, {}]
    for ids, units, ss, se in scans:
        pred, stream = [0] * len(comps), []
        for u, unit in enumerate(units):
            if restart and u and ss == 0 and not progressive:
                pred = [0] * len(comps)
            syms = []
            for k, block in unit:
                if ss == 0:
                    for s in _dc_symbols(block[0] - pred[k]):
                        syms.append(("dc", k, s))
                        dc_counts[cls(k)][s[0]] = dc_counts[cls(k)].get(s[0], 0) + 1
                    pred[k] = block[0]
                if se > 0:
                    for s in _ac_symbols(block, max(ss, 1)):
                        syms.append(("ac", k, s))
                        ac_counts[cls(k)][s[0]] = ac_counts[cls(k)].get(s[0], 0) + 1
            stream.append(syms)
        streams.append(stream)
    dc_tabs = [_huffman(c) if c else None for c in dc_counts]
    ac_tabs = [_huffman(c) if c else None for c in ac_counts]

    out = b"\xff\xd8" + _segment(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0")
    out += _segment(0xDB, bytes([0]) + bytes(int(QTABLE.reshape(-1)[i]) for i in ZIGZAG))
    dw, dh = declared or (w, h)
    sof = struct.pack(">BHHB", 8, dh, dw, len(comps)) + b"".join(
        bytes([cid, (s << 4) | s, 0]) for cid, s, _, _, _ in comps)
    out += _segment(0xC2 if progressive else 0xC0, sof)
    for tc, tabs in ((0, dc_tabs), (1, ac_tabs)):
        for th, t in enumerate(tabs):
            if t:
                out += _segment(0xC4, bytes([(tc << 4) | th] + t[0] + t[1]))
    if restart and not progressive:
        out += _segment(0xDD, struct.pack(">H", 1))
    for (ids, units, ss, se), stream in zip(scans, streams):
        sel = b"".join(bytes([comps[k][0], (cls(k) << 4) | cls(k)]) for k in ids)
        out += _segment(0xDA, bytes([len(ids)]) + sel + bytes([ss, se, 0]))
        codes = {("dc", c): _codes(t) for c, t in enumerate(dc_tabs) if t}
        codes.update({("ac", c): _codes(t) for c, t in enumerate(ac_tabs) if t})
        bw, rst = _BitWriter(), 0
        for u, syms in enumerate(stream):
            if restart and u and not progressive:
                bw.flush()
                bw.out += bytes([0xFF, 0xD0 + rst % 8])
                rst += 1
            for kind, k, (sym, extra, n) in syms:
                code, length = codes[kind, cls(k)][sym]
                bw.put(code, length)
                bw.put(extra, n)
        bw.flush()
        out += bytes(bw.out)
    return out + b"\xff\xd9"
