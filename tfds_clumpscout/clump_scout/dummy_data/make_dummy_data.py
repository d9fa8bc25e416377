"""Regenerates this folder: a tiny `clump_scout/sdss` manual dir covering every rule.

Run from the repository root: ``python tfds_clumpscout/clump_scout/dummy_data/make_dummy_data.py``.

Contents: `boxes_crop.csv` (authors' per-box form, crop pixels; it also carries
`mean_tool,false_pos_prob`, which must not make it the consensus form) and `consensus.csv`
(consensus form, 400 px cutout pixels, with ra/dec/redshift, written with a UTF-8 BOM), with an
exact duplicate row, and one galaxy in both files (a box repeated across forms and a new box).
Cutouts: 400x400 PNGs (RGB, RGBA, 16-bit greyscale, an upper-case `.PNG`), a JPEG in
`images/`, one gzipped FITS g,r,i cube, a corrupt PNG, a wrongly sized PNG and one galaxy
with no cutout at all.
"""

import csv
import gzip
import io
from pathlib import Path

import numpy as np
from astropy.io import fits
from PIL import Image

HERE = Path(__file__).parent
SIZE = 400

# local_ids, label (1 clump, 2 odd), x1, x2, y1, y2 in 200 px crop pixels.
CROP_ROWS = [
    ("100000000001", 1, 60, 76, 70, 86),  # kept
    ("100000000001", 1, 60, 76, 70, 86),  # duplicate of the row above
    ("100000000001", 2, 120, 136, 110, 126),  # kept
    ("100000000001", 1, 92, 108, 93, 109),  # bulge: centre (100, 101)
    ("100000000002", 1, 40, 56, 40, 56),  # kept
    ("100000000002", 1, 10, 26, 90, 106),  # edge: x1 = 10 < 20
    ("100000000002", 2, 150, 170, 60, 80),  # kept
    ("100000000003", 2, 50, 66, 50, 66),  # kept
    ("100000000003", 2, -40, -20, 90, 110),  # outside the crop
    ("100000000003", 1, "nan", 70, 60, 70),  # bad coordinates
    ("100000000004", 1, 130, 146, 130, 146),  # kept (RGBA cutout)
    ("100000000004", 3, 60, 76, 60, 76),  # bad label
    ("100000000004", 1, 76, 60, 60, 76),  # bad coordinates: inverted
    ("100000000005", 1, 95, 105, 95, 105),  # bulge only -> galaxy dropped
    ("100000000006", 1, 30, 46, 140, 156),  # kept (16-bit greyscale PNG)
    ("100000000006", 2, 140, 156, 30, 46),  # kept
    ("100000000007", 2, 70, 86, 120, 136),  # kept, odd-dominated
    ("100000000090", 1, 60, 76, 60, 76),  # missing image
    ("100000000091", 1, 60, 76, 60, 76),  # corrupt PNG
    ("100000000092", 1, 60, 76, 60, 76),  # wrongly sized PNG
    ("", 1, 60, 76, 60, 76),  # bad id
]
# local_ids, x1, x2, y1, y2 (400 px), mean_tool, false_pos_prob, ra, dec, redshift.
CONSENSUS_ROWS = [
    ("100000000008", 150, 166, 170, 186, 0.1, 0.2, 150.25, 2.5, 0.08),  # kept clump
    ("100000000008", 250, 266, 230, 246, 0.6, 0.1, 150.25, 2.5, 0.08),  # kept odd (mean_tool)
    ("100000000008", 192, 208, 194, 210, 0.0, 0.0, 150.25, 2.5, 0.08),  # bulge
    ("100000000009", 160, 176, 160, 176, 0.2, 0.8, 151.0, -1.25, 0.12),  # kept odd (improbable)
    ("100000000009", 105, 121, 200, 216, 0.2, 0.1, 151.0, -1.25, 0.12),  # edge: x1 = 5 px
    ("100000000010", 140, 156, 220, 236, 0.3, "", 152.0, 0.5, ""),  # bad label: no false_pos_prob
    ("100000000010", 230, 246, 150, 166, 0.3, 0.2, 152.0, 0.5, ""),  # kept (FITS cutout)
    ("100000000011", 170, 186, 230, 246, 0.1, 0.1, "", "", ""),  # kept (images/….jpg)
    ("100000000012", 220, 236, 170, 186, 0.7, 0.1, "", "", ""),  # kept, odd-dominated (.PNG)
    ("100000000002", 140, 156, 140, 156, 0.1, 0.1, "", "", ""),  # duplicate of a crop-form row
    ("100000000002", 230, 246, 220, 236, 0.1, 0.1, "", "", ""),  # kept: merges with the crop form
]


def _galaxy(seed: int) -> np.ndarray:
    """A smooth 400x400 RGB blob that compresses to a few KB."""
    y, x = np.mgrid[:SIZE, :SIZE] - SIZE / 2
    rng = np.random.default_rng(seed)
    r2 = (x / rng.uniform(20, 40)) ** 2 + (y / rng.uniform(20, 40)) ** 2
    light = np.exp(-r2 / 2)
    rgb = np.stack([light * 200, light * 170, light * 230], axis=-1)
    return (np.round(rgb / 16) * 16).astype(np.uint8)


def main():
    with (HERE / "boxes_crop.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["image_id", "local_ids", "label", "label_text", "x1", "x2", "y1", "y2", "mean_tool", "false_pos_prob"]
        )
        for k, (gid, label, x1, x2, y1, y2) in enumerate(CROP_ROWS):
            label_text = {1: "clumpy", 2: "clumpy, odd"}.get(label, "?")
            writer.writerow([36700000 + k, gid, label, label_text, x1, x2, y1, y2, 0.2, 0.1])
    with (HERE / "consensus.csv").open("w", newline="", encoding="utf-8-sig") as f:
        writer = csv.writer(f)
        writer.writerow(["local_ids", "x1", "x2", "y1", "y2", "mean_tool", "false_pos_prob", "ra", "dec", "redshift"])
        writer.writerows(CONSENSUS_ROWS)

    for n in (1, 2, 3, 7, 8, 9):
        Image.fromarray(_galaxy(n)).save(HERE / f"1000000000{n:02d}.png", optimize=True)
    grey16 = _galaxy(6)[..., 0].astype(np.uint16) * 257 + 100  # high bytes 0..255, low bytes not 0
    Image.fromarray(grey16).save(HERE / "100000000006.png", optimize=True)
    (HERE / "images").mkdir(exist_ok=True)
    Image.fromarray(_galaxy(11)).save(HERE / "images" / "100000000011.jpg", quality=90)
    Image.fromarray(_galaxy(12)).save(HERE / "100000000012.PNG", optimize=True)
    rgba = np.concatenate([_galaxy(4), np.full((SIZE, SIZE, 1), 255, np.uint8)], axis=-1)
    Image.fromarray(rgba, "RGBA").save(HERE / "100000000004.png", optimize=True)
    (HERE / "100000000091.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a PNG body")
    Image.fromarray(_galaxy(92)[:300, :300]).save(HERE / "100000000092.png", optimize=True)

    gri = np.round(_galaxy(10).transpose(2, 0, 1)[::-1] / 40.0, 1).astype(np.float32)
    buffer = io.BytesIO()
    fits.PrimaryHDU(gri).writeto(buffer)
    (HERE / "100000000010.fits.gz").write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


if __name__ == "__main__":
    main()
