"""Turn the EMIDEC late-enhancement cardiac MRI slices into a segfeat data folder.

EMIDEC (100 cases: 33 normal, 67 with myocardial infarction; 256x256 PNG slices, masks with
0 background, 1 LV cavity, 2 myocardium, 3 infarct, 4 microvascular obstruction) is not
shipped with segfeat and has no licence stated: fetch it for your own experiments and do
not commit it. A copy laid out as `dataset/{train,val}/Case_<ID>_slice<NNN>.png` with the
masks in `dataset/{train,val}annot/` is read here.

What this writes into OUT (segfeat's folder layout, see README "Folders of real images"):
- images/<ID>_<NNN>.png: the slice, centre-cropped to rows and columns 64..191 (128x128),
  which holds every labelled pixel of all 708 slices (rows 80..176, columns 67..185);
- masks/<ID>_<NNN>.png: labels 0 BG, 1 LV, 2 Myo, with infarct (3) and microvascular
  obstruction (4) merged into the myocardium they belong to, so that the segmentation
  network learns anatomy only;
- manifest.csv: name, patient (the case id), group: `normal` for the normal cases,
  `infarct` for slices of infarct cases with infarct or obstruction pixels. Slices of
  infarct cases without them are left out (neither normal nor visibly diseased).

Usage: python3 examples/emidec/prepare.py EMIDEC_ROOT OUT   (needs Pillow and NumPy)
Then, e.g. (label names BG,LV,Myo):
  segfeat train-seg --data OUT --label-names BG,LV,Myo --patients <normal ids> ...
"""

import os
import re
import sys

import numpy as np
from PIL import Image

CROP = (64, 192)  # rows and columns kept: [64, 192)
NAME = re.compile(r"Case_([NP]\d+)_slice(\d+)\.png$")


def main(root, out):
    os.makedirs(os.path.join(out, "images"), exist_ok=True)
    os.makedirs(os.path.join(out, "masks"), exist_ok=True)
    rows = []
    counts = {"normal": 0, "infarct": 0, "left out": 0}
    for split in ("train", "val"):
        folder = os.path.join(root, "dataset", split)
        if not os.path.isdir(folder):
            continue
        for f in sorted(os.listdir(folder)):
            m = NAME.search(f)
            if not m:
                continue
            case, sl = m.group(1), m.group(2)
            img = np.array(Image.open(os.path.join(folder, f)).convert("L"))
            mask = np.array(Image.open(os.path.join(root, "dataset", split + "annot", f)))
            if img.shape != (256, 256) or mask.shape != (256, 256):
                sys.exit(f"{f}: expected 256x256 image and mask, got {img.shape} and {mask.shape}")
            inside = np.zeros_like(mask, dtype=bool)
            inside[CROP[0]:CROP[1], CROP[0]:CROP[1]] = True
            if (mask[~inside] != 0).any():
                sys.exit(f"{f}: labelled pixels outside the crop {CROP}")
            diseased = bool(((mask == 3) | (mask == 4)).any())
            if case.startswith("N"):
                group = "normal"
            elif diseased:
                group = "infarct"
            else:
                counts["left out"] += 1
                continue
            counts[group] += 1
            merged = np.where(mask >= 3, 2, mask).astype(np.uint8)
            name = f"{case}_{sl}"
            c = slice(CROP[0], CROP[1])
            Image.fromarray(img[c, c]).save(os.path.join(out, "images", name + ".png"))
            Image.fromarray(merged[c, c]).save(os.path.join(out, "masks", name + ".png"))
            rows.append(f"{name},{case},{group}")
    if not rows:
        sys.exit(f"no EMIDEC slices under {root}/dataset/{{train,val}}")
    with open(os.path.join(out, "manifest.csv"), "w") as fh:
        fh.write("name,patient,group\n" + "\n".join(rows) + "\n")
    print(f"{out}: {counts['normal']} normal and {counts['infarct']} infarct slices; "
          f"{counts['left out']} slices of infarct cases without infarct labels left out")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
