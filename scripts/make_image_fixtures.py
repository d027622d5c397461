#!/usr/bin/env python3
"""Writes the image fixtures of Tests/QuarryFormatsTests/Fixtures/images.

Images are written with Pillow, except 16-bit colour and interlaced PNGs, which Pillow cannot
write and which a small PNG writer below produces. Expected values come from Pillow + numpy:

  NAME.rgb.npy      uint8 [H, W, 3]: Image.open(NAME).convert("RGB"), i.e. what torchvision sees.
  NAME.rgb16.npy    uint16 [H, W, 3] for 16-bit PNGs: the samples (grey replicated, alpha dropped);
                    Quarry scales them by 1/65535 where Pillow would clamp or truncate to 8 bits.
  CASE.f32.npy      float32 [3, H, W]: torchvision's Resize -> CenterCrop -> ToTensor -> Normalize
                    computed with Pillow (Image.resize BILINEAR, reducing_gap None) and numpy.
  CASE.u8.npy       uint8 [H, W, 3]: the same before ToTensor (used for the full 224 crop, which
                    is 4x smaller this way); the test normalises it.
  cases.txt         one line per preprocessing case: name, source, resize (0: none), crop height,
                    crop width (0 0: none), then "imagenet" or "unit" normalisation.

The later fixtures (WebP: lossless RGB and RGBA, lossy RGB, a truncated and a corrupt file; and
photo_301x263.jpg decoded at half scale by Pillow's draft mode, NAME.half.rgb.npy) come from their
own seed, so `python3 scripts/make_image_fixtures.py extra` writes only them and leaves the others.

Run: python3 scripts/make_image_fixtures.py (needs pillow and numpy). Deterministic.
"""
import io
import os
import struct
import zlib

import numpy as np
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "QuarryFormatsTests", "Fixtures", "images")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
rng = np.random.default_rng(20240607)


def path(name):
    return os.path.join(OUT, name)


def picture(h, w, channels=3, noise=40.0):
    """Smooth colour gradients, a few edges, and noise: textured enough to test resampling."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    planes = []
    for c in range(channels):
        base = 128 + 90 * np.sin(x / (w / (2.0 + c)) + c) * np.cos(y / (h / (1.5 + c)))
        base += np.where((x + 2 * y + 7 * c) % 23 < 5, 60.0, 0.0)
        base += rng.normal(0, noise, size=(h, w))
        planes.append(base)
    return np.clip(np.stack(planes, axis=-1), 0, 255).round().astype(np.uint8)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png(name, samples, color_type, bit_depth, interlace):
    """A plain PNG writer (filter 0), for what Pillow cannot write: 16-bit colour, Adam7."""
    h, w = samples.shape[:2]
    dtype = ">u2" if bit_depth == 16 else "u1"

    def scanlines(sub):
        return b"".join(b"\0" + row.astype(dtype).tobytes() for row in sub)

    if interlace:
        passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
        raw = b"".join(scanlines(samples[y0::dy, x0::dx]) for x0, y0, dx, dy in passes
                       if samples[y0::dy, x0::dx].size > 0)
    else:
        raw = scanlines(samples)
    header = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, 0, 0, 1 if interlace else 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", zlib.compress(raw, 9)) \
        + png_chunk(b"IEND", b"")
    with open(path(name), "wb") as f:
        f.write(data)


def save_expected_rgb(name):
    with Image.open(path(name)) as im:
        rgb = np.asarray(im.convert("RGB"))
    np.save(path(name + ".rgb.npy"), rgb)
    return rgb


# torchvision's ImageNet evaluation transform on a PIL image, step by step.
def resized_size(w, h, shorter):
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = shorter, int(shorter * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def center_crop(arr, ch, cw):
    h, w = arr.shape[:2]
    if cw > w or ch > h:
        left = (cw - w) // 2 if cw > w else 0
        top = (ch - h) // 2 if ch > h else 0
        right = (cw - w + 1) // 2 if cw > w else 0
        bottom = (ch - h + 1) // 2 if ch > h else 0
        arr = np.pad(arr, ((top, bottom), (left, right), (0, 0)))
        h, w = arr.shape[:2]
        if (cw, ch) == (w, h):
            return arr
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return arr[top:top + ch, left:left + cw]


def transform_uint8(name, resize, crop):
    with Image.open(path(name)) as im:
        im = im.convert("RGB")
        if resize:
            size = resized_size(im.width, im.height, resize)
            if size != im.size:
                im = im.resize(size, Image.BILINEAR)
        arr = np.asarray(im)
    if crop:
        arr = center_crop(arr, *crop)
    return arr


def normalise(arr01, unit):
    chw = np.ascontiguousarray(arr01.transpose(2, 0, 1), dtype=np.float32)
    if unit:
        return chw
    return (chw - MEAN[:, None, None]) / STD[:, None, None]


def transform_float(samples01, resize, crop):
    """Pillow's "F" (float) path, channel by channel, for 16-bit sources."""
    h, w = samples01.shape[:2]
    if resize:
        size = resized_size(w, h, resize)
        if size != (w, h):
            samples01 = np.stack([np.asarray(Image.fromarray(samples01[:, :, c]).resize(size, Image.BILINEAR))
                                  for c in range(3)], axis=-1)
    if crop:
        samples01 = center_crop(samples01, *crop)
    return samples01


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(path(f))

    # 8-bit PNGs of every colour type Pillow writes.
    Image.fromarray(picture(53, 37)).save(path("rgb_37x53.png"))
    Image.fromarray(picture(29, 31, 1)[:, :, 0]).save(path("grey_31x29.png"))
    Image.fromarray(picture(17, 23, 2), "LA").save(path("grey_alpha_23x17.png"))
    Image.fromarray(picture(23, 40, 4), "RGBA").save(path("rgba_40x23.png"))
    Image.fromarray(picture(21, 33)).quantize(colors=16).save(path("palette_33x21.png"), transparency=3)
    Image.fromarray(picture(13, 19, 1)[:, :, 0]).convert("1").save(path("bilevel_19x13.png"))
    for n in ["rgb_37x53.png", "grey_31x29.png", "grey_alpha_23x17.png", "rgba_40x23.png",
              "palette_33x21.png", "bilevel_19x13.png"]:
        save_expected_rgb(n)

    # Interlaced 8-bit RGB: Pillow reads it; the expected pixels are the samples written.
    interlaced = picture(31, 29)
    write_png("interlaced_29x31.png", interlaced, 2, 8, True)
    assert (save_expected_rgb("interlaced_29x31.png") == interlaced).all()

    # 16-bit: RGB, grey (Pillow reads grey as I;16, which checks the file), interlaced grey + alpha.
    rgb16 = rng.integers(0, 65536, size=(17, 19, 3), dtype=np.uint16)
    write_png("rgb16_19x17.png", rgb16, 2, 16, False)
    np.save(path("rgb16_19x17.png.rgb16.npy"), rgb16)
    grey16 = rng.integers(0, 65536, size=(15, 21), dtype=np.uint16)
    write_png("grey16_21x15.png", grey16[:, :, None], 0, 16, False)
    with Image.open(path("grey16_21x15.png")) as im:
        assert (np.asarray(im).astype(np.uint16) == grey16).all(), "Pillow disagrees with the 16-bit writer"
    np.save(path("grey16_21x15.png.rgb16.npy"), np.repeat(grey16[:, :, None], 3, axis=2))
    ga16 = rng.integers(0, 65536, size=(11, 14, 2), dtype=np.uint16)
    write_png("grey_alpha16_interlaced_14x11.png", ga16, 4, 16, True)
    np.save(path("grey_alpha16_interlaced_14x11.png.rgb16.npy"), np.repeat(ga16[:, :, :1], 3, axis=2))

    # JPEGs: 4:2:0 colour, grey, progressive, CMYK, 4:4:4.
    Image.fromarray(picture(53, 37)).save(path("rgb_37x53.jpg"), quality=90)
    Image.fromarray(picture(29, 31, 1)[:, :, 0]).save(path("grey_31x29.jpg"), quality=90)
    Image.fromarray(picture(38, 45)).save(path("progressive_45x38.jpg"), quality=85, progressive=True)
    Image.fromarray(picture(19, 27, 4), "CMYK").save(path("cmyk_27x19.jpg"), quality=90)
    Image.fromarray(picture(24, 26)).save(path("rgb444_26x24.jpg"), quality=95, subsampling=0)
    for n in ["rgb_37x53.jpg", "grey_31x29.jpg", "progressive_45x38.jpg", "cmyk_27x19.jpg", "rgb444_26x24.jpg"]:
        save_expected_rgb(n)

    # A larger photo-like JPEG for the full ImageNet transform.
    # Its decode is checked through the preprocessing cases (stored, it would be 240 KB).
    Image.fromarray(picture(263, 301, noise=12.0)).save(path("photo_301x263.jpg"), quality=80)

    # Broken files.
    jpeg = open(path("rgb_37x53.jpg"), "rb").read()
    open(path("truncated.jpg"), "wb").write(jpeg[: len(jpeg) * 6 // 10])
    open(path("no_eoi.jpg"), "wb").write(jpeg[:-2])  # every scan, no end marker: Pillow refuses it
    png = bytearray(open(path("rgb_37x53.png"), "rb").read())
    idat = png.index(b"IDAT")
    corrupt = bytearray(png)
    corrupt[idat + 40] ^= 0x5A
    open(path("corrupt.png"), "wb").write(bytes(corrupt))
    bad_crc = bytearray(png)
    idat_length = struct.unpack(">I", bytes(png[idat - 4:idat]))[0]
    bad_crc[idat + 4 + idat_length] ^= 0xFF  # first byte of the IDAT CRC; the data is intact
    open(path("bad_crc.png"), "wb").write(bytes(bad_crc))
    open(path("truncated.png"), "wb").write(bytes(png[: idat + 200]))
    open(path("text.jpg"), "w").write("this is not a picture\n")
    open(path("empty.png"), "wb").close()
    buf = io.BytesIO()
    Image.fromarray(picture(8, 8)).save(buf, format="GIF")
    open(path("gif_named.png"), "wb").write(buf.getvalue())

    # Preprocessing cases.
    cases = [
        # name, source, resize, crop (h, w), normalisation
        ("downscale", "photo_301x263.jpg", 64, (48, 40), "imagenet"),
        ("upscale", "rgb_37x53.png", 64, (50, 44), "imagenet"),
        ("resize_only", "palette_33x21.png", 16, None, "imagenet"),
        ("pad_both", "grey_31x29.png", None, (36, 34), "imagenet"),
        ("pad_width", "rgba_40x23.png", None, (20, 45), "unit"),
        ("odd_offsets", "progressive_45x38.jpg", 33, (30, 31), "imagenet"),
        ("float16bit", "rgb16_19x17.png", 11, (9, 10), "imagenet"),
        ("imagenet", "photo_301x263.jpg", 256, (224, 224), "imagenet"),
    ]
    lines = []
    for name, source, resize, crop, norm in cases:
        if source.startswith("rgb16"):
            samples = (np.load(path(source + ".rgb16.npy")).astype(np.float32) / np.float32(65535))
            out = normalise(transform_float(samples, resize, crop), norm == "unit")
            np.save(path(name + ".f32.npy"), out.astype(np.float32))
        else:
            arr = transform_uint8(source, resize, crop)
            if name == "imagenet":
                np.save(path(name + ".u8.npy"), arr)
            else:
                np.save(path(name + ".f32.npy"), normalise(arr.astype(np.float32) / np.float32(255), norm == "unit"))
        ch, cw = crop if crop else (0, 0)
        lines.append(f"{name} {source} {resize or 0} {ch} {cw} {norm}")
    open(path("cases.txt"), "w").write("\n".join(lines) + "\n")
    extra_fixtures()


def extra_fixtures():
    """WebP images with Pillow's decode as the expected pixels; alpha is dropped by convert("RGB")."""
    global rng
    rng = np.random.default_rng(20261204)
    Image.fromarray(picture(29, 35)).save(path("lossless_35x29.webp"), lossless=True)
    Image.fromarray(picture(21, 26, 4), "RGBA").save(path("rgba_lossless_26x21.webp"), lossless=True)
    Image.fromarray(picture(40, 48)).save(path("lossy_48x40.webp"), quality=80)
    for n in ["lossless_35x29.webp", "rgba_lossless_26x21.webp", "lossy_48x40.webp"]:
        save_expected_rgb(n)
    webp = open(path("lossy_48x40.webp"), "rb").read()
    open(path("truncated.webp"), "wb").write(webp[: len(webp) // 2])
    # Lossy data decodes to some picture whatever its bits; a lossless stream's codes do not.
    corrupt = bytearray(open(path("lossless_35x29.webp"), "rb").read())
    for i in range(30, len(corrupt), 5):
        corrupt[i] ^= 0xA5
    open(path("corrupt.webp"), "wb").write(bytes(corrupt))
    # libjpeg's DCT-domain 1/2 scale, as Pillow's draft mode asks for it.
    half = Image.open(path("photo_301x263.jpg"))
    half.draft("RGB", (100, 100))
    assert half.size == (151, 132), half.size
    np.save(path("photo_301x263.jpg.half.rgb.npy"), np.asarray(half.convert("RGB")))


if __name__ == "__main__":
    import sys
    if sys.argv[1:] == ["extra"]:
        extra_fixtures()
    else:
        main()
