"""Writes the small sample images in samples/images (README's first command extracts them, the CLI
tests use them): smooth synthetic pictures in the formats and modes extraction must handle.
Run by developers; the images are committed."""
import numpy as np
from PIL import Image
import os

out = os.path.join(os.path.dirname(__file__), "..", "samples", "images")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)

def picture(h, w, channels=3):
    y, x = np.mgrid[0:h, 0:w]
    planes = []
    for c in range(channels):
        fx, fy, ph = rng.uniform(0.01, 0.08), rng.uniform(0.01, 0.08), rng.uniform(0, 6.3)
        planes.append(127.5 + 127.5 * np.sin(fx * x + fy * y + ph))
    return np.clip(np.stack(planes, -1), 0, 255).astype(np.uint8)

Image.fromarray(picture(240, 320)).save(f"{out}/beach.jpg", quality=90)
Image.fromarray(picture(300, 200)).save(f"{out}/canyon.png")
Image.fromarray(picture(180, 260)[..., 0]).convert("L").save(f"{out}/fog_grey.jpg", quality=90)
Image.fromarray(picture(256, 256, 4), "RGBA").save(f"{out}/glacier_rgba.png")
grey16 = (picture(200, 280)[..., 0].astype(np.uint16) * 257)
Image.fromarray(grey16).save(f"{out}/moon_16bit.png")
Image.fromarray(picture(224, 224)).convert("P", palette=Image.ADAPTIVE, colors=64).save(f"{out}/reef_palette.png")
