"""A Grain random-access source over MS-COCO in its official layout: images with all their captions and boxes.

Why: COCO captions are the real annotation stream of the CLIP methods, and its instance boxes let evaluation
score what the crop policy looks at. Layout:

    root/{split}/000000000009.jpg
    root/annotations/captions_{split}.json
    root/annotations/instances_{split}.json   (optional: boxes)

Both JSON files are parsed once, at construction, into flat arrays; afterwards the source is read-only, hence
thread-safe and picklable into Grain worker processes. It only reads bytes: decoding, and skipping of bad files,
happens in rlvis/data/decode.py. An image listed in the captions file but missing on disk is therefore NOT
checked at construction (118k stat calls on a network disk is minutes); reading it returns b"", which decode
skips as "empty", exactly like a zero-byte file.
"""

import json
import os

import numpy as np


def _load_json(path: str) -> dict:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _flatten(per_image: list[list[tuple]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image (y0, x0, h, w, category) lists → (offsets [N + 1], boxes [M, 4], labels [M]): flat arrays are
    compact to pickle into workers, unlike 118k small arrays."""
    counts = np.array([len(boxes) for boxes in per_image], np.int64)
    flat = [box for boxes in per_image for box in boxes]
    return (
        np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        np.array([box[:4] for box in flat], np.float32).reshape(-1, 4),
        np.array([box[4] for box in flat], np.int32),
    )


class COCOSource:
    """`source[i]` → dict(image=<file bytes or b"">, caption, captions, key, boxes, box_labels, crowd_boxes,
    crowd_labels).

    One record per image of the captions file (of the instances file with `captions=False`, for detection
    evaluation, which needs no captions), sorted by file name. `captions` lists all the image's captions
    (annotation-id order, whitespace stripped) and `caption` is the first (None for an image without captions,
    which decode skips as "no_caption"). `key` is the path relative to root, e.g. "train2017/000000000009.jpg".
    `boxes` float32 [N, 4] are (y0, x0, h, w) as fractions of the image height/width from the JSON `images`
    entries, clipped to the image; `box_labels` int32 [N] are COCO category ids. Crowd regions are apart, in
    `crowd_boxes` / `crowd_labels` (detection training leaves them out; COCO's AP ignores detections on them); boxes
    with no area are left out. Without an instances file all of these are empty.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train2017", captions: bool = True):
        if not os.fspath(root):  # abspath("") would silently read the working directory
            raise FileNotFoundError("COCO root path is empty")
        self.root = os.path.abspath(os.fspath(root))  # absolute: worker processes may run from another directory
        self.split = split
        image_dir = os.path.join(self.root, split)
        captions_path = os.path.join(self.root, "annotations", f"captions_{split}.json")
        instances_path = os.path.join(self.root, "annotations", f"instances_{split}.json")
        listing_path = captions_path if captions else instances_path
        for path in (image_dir, listing_path):
            if not os.path.exists(path):
                raise FileNotFoundError(f"COCO {split}: not found: {path}")

        # Without captions the instances file lists the images; it is parsed once, kept for the boxes below.
        instances_json = None if captions else _load_json(instances_path)
        captions_json = _load_json(captions_path) if captions else dict(annotations=[], images=instances_json["images"])
        images = sorted(captions_json["images"], key=lambda image: image["file_name"])
        if not images:
            raise FileNotFoundError(f"COCO {split}: no images listed in {listing_path}")
        row = {image["id"]: i for i, image in enumerate(images)}
        self.file_names = [image["file_name"] for image in images]
        self.image_ids = np.array([image["id"] for image in images], np.int64)
        self.sizes = np.array([(image["height"], image["width"]) for image in images], np.int32)  # (h, w)

        texts: list[list[str]] = [[] for _ in images]
        for annotation in sorted(captions_json["annotations"], key=lambda annotation: annotation["id"]):
            if annotation["image_id"] in row:
                texts[row[annotation["image_id"]]].append(annotation["caption"].strip())
        self.captions = [tuple(image_texts) for image_texts in texts]
        del captions_json

        self.has_instances = os.path.exists(instances_path)
        self.categories: dict[int, str] = {}
        per_image: list[list[tuple[float, float, float, float, int]]] = [[] for _ in images]
        crowds: list[list[tuple[float, float, float, float, int]]] = [[] for _ in images]
        if self.has_instances:
            instances_json = instances_json or _load_json(instances_path)
            self.categories = {category["id"]: category["name"] for category in instances_json["categories"]}
            for annotation in sorted(instances_json["annotations"], key=lambda annotation: annotation["id"]):
                i = row.get(annotation["image_id"])
                if i is None:
                    continue
                height, width = self.sizes[i]
                x, y, w, h = annotation["bbox"]  # COCO: pixels, (x, y) of the top-left corner
                y0, x0 = min(max(y / height, 0.0), 1.0), min(max(x / width, 0.0), 1.0)
                box_h, box_w = min(h / height, 1.0 - y0), min(w / width, 1.0 - x0)
                if box_h > 0 and box_w > 0:
                    target = crowds if annotation.get("iscrowd", 0) else per_image
                    target[i].append((y0, x0, box_h, box_w, annotation["category_id"]))
            del instances_json
        self.box_offsets, self.boxes, self.box_labels = _flatten(per_image)
        self.crowd_offsets, self.crowd_boxes, self.crowd_labels = _flatten(crowds)

    def __len__(self) -> int:
        return len(self.file_names)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]  # negative indices, and IndexError past the end, as for a list
        key = f"{self.split}/{self.file_names[index]}"
        try:
            with open(os.path.join(self.root, key), "rb") as file:
                data = file.read()
        except FileNotFoundError:
            data = b""  # listed but not on disk: decode skips it as "empty" (see the module docstring)
        captions = list(self.captions[index])
        start, stop = self.box_offsets[index], self.box_offsets[index + 1]
        crowd = slice(self.crowd_offsets[index], self.crowd_offsets[index + 1])
        return dict(
            image=data,
            caption=captions[0] if captions else None,
            captions=captions,
            key=key,
            boxes=self.boxes[start:stop].copy(),
            box_labels=self.box_labels[start:stop].copy(),
            crowd_boxes=self.crowd_boxes[crowd].copy(),
            crowd_labels=self.crowd_labels[crowd].copy(),
        )

    def __repr__(self) -> str:
        return (
            f"COCOSource(root={self.root!r}, split={self.split!r}, images={len(self)}, "
            f"boxes={len(self.boxes) if self.has_instances else 'none'})"
        )
