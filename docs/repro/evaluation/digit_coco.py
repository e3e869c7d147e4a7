"""Write the embedded held-out digit scenes as a COCO 2017 folder, so the detection evaluator (`evals=coco`) can
score a demo checkpoint the way it scores a COCO run: train2017 from the probe-train digits, val2017 from the
probe-test digits (never seen in pre-training), one instance per digit, category id = digit + 1.

    python docs/repro/evaluation/digit_coco.py /tmp/digit_coco [--scenes=1000]
    python -m rlvis.evaluate --workdir=runs/demo --evals=coco --evals_root=/tmp/digit_coco \
        --probe=depth=2,width=64,heads=4,steps=1500,batch_size=128,learning_rate=0.003
"""

import argparse
import json
import pathlib

import numpy as np
from PIL import Image

from configs import demo
from rlvis.data import digits


def write(root: pathlib.Path, scenes: int) -> None:
    config = demo.get_config()
    splits = digits.load_digits(config.eval.digits_per_class)
    rng = np.random.default_rng(7)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    for split, images, labels in (("train2017", splits.probe_train_images, splits.probe_train_labels),
                                  ("val2017", splits.probe_test_images, splits.probe_test_labels)):
        (root / split).mkdir(exist_ok=True)
        made = digits.compose_scenes(rng, images, labels, scenes, config.data)
        entries, instances = [], []
        for i in range(scenes):
            height, width = (int(v) for v in made["valid"][i])
            name = f"{i + 1:012d}.png"  # lossless: the digits are thin strokes
            Image.fromarray(made["image"][i][:height, :width, 0]).save(root / split / name)
            entries.append(dict(id=i + 1, file_name=name, height=height, width=width))
            for box, label in zip(made["boxes"][i][:made["count"][i]], made["labels"][i][:made["count"][i]]):
                y0, x0, h, w = box * [height, width, height, width]
                instances.append(dict(id=len(instances) + 1, image_id=i + 1, category_id=int(label) + 1, iscrowd=0,
                                      bbox=[float(x0), float(y0), float(w), float(h)], area=float(w * h)))
        categories = [dict(id=c + 1, name=str(c)) for c in range(10)]
        (root / "annotations" / f"instances_{split}.json").write_text(
            json.dumps(dict(images=entries, annotations=instances, categories=categories)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=pathlib.Path)
    parser.add_argument("--scenes", type=int, default=1000)
    args = parser.parse_args()
    write(args.root, args.scenes)
    print(f"wrote {args.scenes} train2017 and {args.scenes} val2017 scenes under {args.root}")
