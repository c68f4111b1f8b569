"""Tiny image files for the image_decode_fuzz seeds, encoded here by hand.

No imaging library is needed (only numpy and zlib), and the encoders are
independent of the decoder under test, so tests/engine/image_limits_test.cpp
can check the decoded pixels against the pattern below. Every seed shows
pattern(w, h): lossless formats must decode to it exactly, JPEG closely.

Each encoder covers a path of its decoder that the others do not: PNG colour
types, bit depths, filters, Adam7 and split IDATs; baseline, 4:2:0, restart
intervals and progressive JPEG; BMP bit depths, bitfields and top-down rows;
TGA raw, RLE, grey and colour-mapped; GIF LZW; 8/16-bit PNM; HDR; PSD.
"""
import math
import struct
import zlib

import numpy as np

from jpeg_seed import jpeg


def pattern(w, h):
    """The pixels every seed shows: RGB uint8 [h, w, 3], smooth so JPEG keeps it."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([40 * x + 10, 60 * y + 20, 200 - 30 * x + 10 * y], -1).clip(0, 255).astype(np.uint8)


def grey(w, h):
    """A grey pattern, for the one-channel formats."""
    y, x = np.mgrid[0:h, 0:w]
    return (30 * x + 40 * y + 20).clip(0, 255).astype(np.uint8)


# ---- PNG ----

def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter_rows(rows, bpp):
    """Filters rows (lists of bytes), cycling through all five filter types."""
    out, prev = bytearray(), [0] * len(rows[0]) if rows else []
    for i, row in enumerate(rows):
        ft = i % 5
        line = []
        for j, v in enumerate(row):
            a = row[j - bpp] if j >= bpp else 0
            b = prev[j]
            c = prev[j - bpp] if j >= bpp else 0
            pred = (0, a, b, (a + b) // 2, _paeth(a, b, c))[ft]
            line.append((v - pred) & 255)
        out += bytes([ft]) + bytes(line)
        prev = row
    return bytes(out)


def _pack_bits(vals, depth):
    """Packs one row of samples of `depth` bits (1, 2, 4, 8 or 16), big-endian."""
    if depth == 16:
        return list(b"".join(struct.pack(">H", int(v)) for v in vals))
    if depth == 8:
        return [int(v) for v in vals]
    out, acc, n = [], 0, 0
    for v in vals:
        acc = (acc << depth) | int(v)
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return out


_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png(samples, color_type, depth=8, palette=None, trns=None, interlace=False, split_idat=False):
    """samples: [h, w, channels] integers already in the file's sample range."""
    h, w, ch = samples.shape
    bpp = max(1, ch * depth // 8)
    if interlace:
        raw = b""
        for x0, y0, dx, dy in _ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.size:
                raw += _filter_rows([_pack_bits(r.reshape(-1), depth) for r in sub], bpp)
    else:
        raw = _filter_rows([_pack_bits(r.reshape(-1), depth) for r in samples], bpp)
    data = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0,
                                                               int(interlace)))
    if palette is not None:
        data += _chunk(b"PLTE", bytes(palette.reshape(-1)))
    if trns is not None:
        data += _chunk(b"tRNS", trns)
    z = zlib.compress(raw, 9)
    parts = [z[:len(z) // 2], z[len(z) // 2:]] if split_idat else [z]
    for p in parts:
        data += _chunk(b"IDAT", p)
    return data + _chunk(b"IEND", b"")


def palettize(img):
    """(indices [h, w], palette [n, 3]) of an image's distinct colours."""
    flat = img.reshape(-1, 3)
    pal, idx = np.unique(flat, axis=0, return_inverse=True)
    return idx.reshape(img.shape[:2]), pal.astype(np.uint8)


# ---- BMP ----

def bmp(img, bits=24, top_down=False, bitfields=False):
    """bits 1/4/8 palettized, 16 (5-5-5, or 5-6-5 with bitfields), 24, 32 (BGRA,
    or RGBA described by a V4 header's masks with bitfields)."""
    h, w, _ = img.shape
    rows, palette, masks, header_size = [], b"", b"", 40
    if bits in (1, 4, 8):
        idx, pal = palettize(img)
        assert len(pal) <= (1 << bits)
        palette = b"".join(bytes([b, g, r, 0]) for r, g, b in pal)
        rows = [bytes(_pack_bits(r, bits)) for r in idx]
    elif bits == 16:
        if bitfields:  # 5-6-5, masks after a 40-byte header
            word = lambda p: (int(p[0]) >> 3) << 11 | (int(p[1]) >> 2) << 5 | int(p[2]) >> 3  # noqa: E731
            masks = struct.pack("<III", 0xF800, 0x07E0, 0x001F)
        else:
            word = lambda p: (int(p[0]) >> 3) << 10 | (int(p[1]) >> 3) << 5 | int(p[2]) >> 3  # noqa: E731
        rows = [b"".join(struct.pack("<H", word(p)) for p in r) for r in img]
    elif bits == 24:
        rows = [bytes(r[:, ::-1].reshape(-1)) for r in img]
    else:
        alpha = np.full((w, 1), 255, np.uint8)
        rows = [bytes(np.concatenate([r if bitfields else r[:, ::-1], alpha], 1).reshape(-1)) for r in img]
    rows = [r + b"\0" * (-len(r) % 4) for r in rows]
    pixels = b"".join(rows if top_down else rows[::-1])
    compression = 3 if bitfields else 0
    info_tail = b""
    if bitfields and bits == 32:  # V4 header: RGBA masks, sRGB, endpoints and gamma unused
        header_size = 108
        info_tail = struct.pack("<IIII", 0xFF, 0xFF00, 0xFF0000, 0xFF000000) + b"BGRs" + b"\0" * 48
    offset = 14 + header_size + len(masks) + len(palette)
    info = struct.pack("<IiiHHIIiiII", header_size, w, -h if top_down else h, 1, bits, compression,
                       len(pixels), 2835, 2835, len(palette) // 4, 0) + info_tail + masks
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


# ---- TGA ----

def tga(img, kind="rgb", rle=False, top_down=True):
    h, w, _ = img.shape
    cmap, cmap_spec = b"", struct.pack("<HHB", 0, 0, 0)
    if kind == "grey":
        px = [bytes([v]) for v in grey(w, h).reshape(-1)]
        itype, depth = 3, 8
    elif kind == "mapped":
        idx, pal = palettize(img)
        px = [bytes([v]) for v in idx.reshape(-1)]
        cmap = b"".join(bytes([b, g, r]) for r, g, b in pal)
        cmap_spec = struct.pack("<HHB", 0, len(pal), 24)
        itype, depth = 1, 8
    else:
        px = [bytes(p[::-1]) for p in img.reshape(-1, 3)]
        itype, depth = 2, 24
    if not top_down:
        px = [p for r in range(h - 1, -1, -1) for p in px[r * w:(r + 1) * w]]
    if rle:
        itype += 8
        body, i = b"", 0
        while i < len(px):  # runs of equal pixels, else raw packets (both up to 128)
            j = i
            while j + 1 < len(px) and px[j + 1] == px[i] and j - i < 127:
                j += 1
            if j > i:
                body += bytes([0x80 | (j - i)]) + px[i]
                i = j + 1
                continue
            j = i
            while j + 1 < len(px) and px[j + 1] != px[j] and j - i < 127:
                j += 1
            body += bytes([j - i]) + b"".join(px[i:j + 1])
            i = j + 1
    else:
        body = b"".join(px)
    header = struct.pack("<BBB", 0, 1 if cmap else 0, itype) + cmap_spec + struct.pack(
        "<HHHHBB", 0, 0, w, h, depth, 0x20 if top_down else 0)
    return header + cmap + body


# ---- GIF ----

def _lzw(indices, min_size):
    clear, eoi = 1 << min_size, (1 << min_size) + 1
    table = {(i,): i for i in range(clear)}
    nxt, width, acc, nbits, out = eoi + 1, min_size + 1, 0, 0, bytearray()

    def put(code, width):
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 255)
            acc >>= 8
            nbits -= 8

    put(clear, width)
    w = ()
    for k in indices:
        if w + (k,) in table:
            w = w + (k,)
            continue
        put(table[w], width)
        table[w + (k,)] = nxt
        # The decoder widens its codes once the entry just added needs another bit.
        if nxt == (1 << width) and width < 12:
            width += 1
        nxt += 1
        w = (k,)
    put(table[w], width)
    put(eoi, width)
    if nbits:
        out.append(acc & 255)
    return bytes(out)


def gif(img):
    h, w, _ = img.shape
    idx, pal = palettize(img)
    bits = max(1, math.ceil(math.log2(len(pal))))
    table = np.zeros((1 << bits, 3), np.uint8)
    table[:len(pal)] = pal
    min_size = max(2, bits)
    data = _lzw([int(v) for v in idx.reshape(-1)], min_size)
    blocks = b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255))
    return (b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80 | 0x70 | (bits - 1), 0, 0) + bytes(table.reshape(-1)) +
            b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0) + bytes([min_size]) + blocks + b"\0\x3b")


# ---- PNM, HDR, PSD ----

def ppm(img, sixteen=False):
    h, w, _ = img.shape
    if sixteen:  # 16-bit samples v * 257 read back as v
        return b"P6\n# kiln seed\n%d %d\n65535\n" % (w, h) + (img.astype(">u2") * 257).tobytes()
    return b"P6\n# kiln seed\n%d %d\n255\n" % (w, h) + img.tobytes()


def pgm(w, h):
    return b"P5 %d %d 255\n" % (w, h) + grey(w, h).tobytes()


def hdr(img):
    """Radiance RGBE, rows too short for RLE; values v/256 come back as v."""
    h, w, _ = img.shape
    px = b"".join(bytes([int(r), int(g), int(b), 128]) for r, g, b in img.reshape(-1, 3))
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y %d +X %d\n" % (h, w) + px


def psd(img):
    """Photoshop, 3 channels, raw planar data."""
    h, w, _ = img.shape
    head = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, h, w, 8, 3) + struct.pack(">IIIH", 0, 0, 0, 0)
    return head + b"".join(img[:, :, c].tobytes() for c in range(3))


def oversized_headers(w=60000, h=60000):
    """Files of ~100 bytes, well formed up to their pixel data, whose headers declare w x h pixels."""
    return {
        "png": b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
               _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""),
        "bmp": b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) +
               struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0) + b"\0" * 46,
        "ppm": b"P6\n%d %d\n255\n" % (w, h) + b"\0" * 64,
        "jpg": jpeg(pattern(8, 8), declared=(w, h)),
    }


def checker(w, h):
    """Two colours, for 1-bit BMP."""
    y, x = np.mgrid[0:h, 0:w]
    return np.where(((x + y) % 2 == 1)[..., None], np.uint8([250, 40, 10]), np.uint8([5, 90, 200])).astype(np.uint8)


def seeds():
    """name -> bytes. The name's first word tells tests/engine/image_limits_test.cpp
    what the file must decode to."""
    p53, p119, p99 = pattern(5, 3), pattern(11, 9), pattern(9, 9)
    g53 = grey(5, 3)
    alpha = (np.arange(15).reshape(3, 5, 1) * 17).astype(np.uint8)
    idx53, pal53 = palettize(p53)
    out = {
        "rgb_png8.png": png(p53, 2),
        "rgb_png_rgba.png": png(np.concatenate([p53, alpha], 2), 6),
        "rgb_png16.png": png(p53.astype(np.int64) * 257, 2, depth=16),
        "rgb_png_palette_trns.png": png(idx53[..., None], 3, palette=pal53, trns=bytes(range(0, 255, 17))),
        "rgb_png_palette4.png": png(idx53[..., None], 3, depth=4, palette=pal53),
        "rgb_png_adam7.png": png(p99, 2, interlace=True),
        "rgb_png_split_idat.png": png(p119, 2, split_idat=True),
        "grey_png8.png": png(g53[..., None], 0),
        "grey_png_alpha.png": png(np.stack([g53, g53], -1), 4),
        "grey_png16.png": png(g53[..., None].astype(np.int64) * 257, 0, depth=16),
        "size_png_grey1.png": png((g53 > 100)[..., None].astype(np.uint8), 0, depth=1),
        "jpeg_baseline.jpg": jpeg(p119),
        "jpeg_420.jpg": jpeg(p119, subsample=True),
        "jpeg_restart.jpg": jpeg(pattern(20, 10), restart=True),
        "jpeg_progressive.jpg": jpeg(p119, progressive=True),
        "jpeggrey_baseline.jpg": jpeg(p119, grey=True),
        "jpeggrey_progressive.jpg": jpeg(p119, grey=True, progressive=True),
        "rgb_bmp24.bmp": bmp(p53),
        "rgb_bmp24_top_down.bmp": bmp(p53, top_down=True),
        "rgb_bmp8.bmp": bmp(p53, 8),
        "rgb_bmp4.bmp": bmp(p53, 4),
        "rgb_bmp32.bmp": bmp(p53, 32),
        "rgb_bmp32_v4_bitfields.bmp": bmp(p53, 32, bitfields=True),
        "checker_bmp1.bmp": bmp(checker(5, 3), 1),
        "size_bmp16.bmp": bmp(p53, 16),
        "size_bmp16_565.bmp": bmp(p53, 16, bitfields=True),
        "rgb_tga.tga": tga(p53),
        "rep2_tga_rle_bottom_up.tga": tga(np.repeat(p53, 2, axis=1), rle=True, top_down=False),
        "rgb_tga_mapped.tga": tga(p53, "mapped"),
        "rep3_tga_mapped_rle.tga": tga(np.repeat(p53, 3, axis=1), "mapped", rle=True),
        "grey_tga.tga": tga(p53, "grey"),
        "rgb_gif.gif": gif(p53),
        "rgb_gif_large.gif": gif(pattern(40, 8)),
        "rgb_ppm.ppm": ppm(p53),
        "rgb_ppm16.ppm": ppm(p53, sixteen=True),
        "grey_pgm.pgm": pgm(5, 3),
        "hdr_rgbe.hdr": hdr(p53),
        "rgb_psd.psd": psd(p53),
    }
    # Cut-off files, the commonest corruption: inside the header, and mid-data.
    for name in ("rgb_png8.png", "jpeg_baseline.jpg", "jpeg_progressive.jpg", "rgb_bmp24.bmp", "rgb_gif.gif",
                 "rep2_tga_rle_bottom_up.tga", "rgb_ppm.ppm", "rgb_psd.psd"):
        data = out[name]
        out["truncated_header_" + name] = data[:min(len(data) // 4, 30)]
        out["truncated_half_" + name] = data[:len(data) // 2]
    return out
