"""A random-access source over EPIC-KITCHENS VISOR's sparse annotations: frames with the boxes of their objects.

Why: the paper scores EpicKitchens pre-training by box-conditioned classification and detection on VISOR. Layout
as released (GroundTruth-SparseAnnotations):

    root/annotations/{split}/P01_01.json             one file per video
    root/rgb_frames/{split}/P01/P01_01.zip           that video's annotated frames (or the folder P01_01/, unzipped)

A video's JSON holds `video_annotations`, one entry per frame: `image` (its `name`, e.g.
"P01_01_frame_0000000140.jpg", and `video`) and `annotations`, each object with `class_id` (an EPIC-KITCHENS-100
noun class, hands included), `name` and `segments` (polygons of [x, y] points). Polygons are drawn at the
annotation resolution (1920 × 1080), whatever size the frame files are, so boxes are taken as fractions of it:
the tight box of all of an object's polygons, clipped to the frame. Objects without area are left out.
"""

import glob
import json
import os
import threading
import zipfile

import numpy as np

ANNOTATION_SIZE = (1080, 1920)  # (h, w) of the frame the polygons are drawn on


class VISORSource:
    """`source[i]` → dict(image=<JPEG bytes or b"">, caption=None, key, boxes [N, 4], box_labels [N]).

    One record per annotated frame, ordered by video then frame name; `boxes` are (y0, x0, h, w) fractions and
    `box_labels` the objects' `class_id`s; `categories` maps class id → name; `sizes` [N, 2] is the annotation
    resolution of every frame. A frame missing from its zip or folder
    reads as b"", which decode skips as "empty". Picklable (open zips are dropped and reopened).
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "train", annotation_size: tuple[int, int] = ANNOTATION_SIZE
    ):
        self.root, self.split = os.path.abspath(os.fspath(root)), split
        annotation_dir = os.path.join(self.root, "annotations", split)
        files = sorted(glob.glob(os.path.join(annotation_dir, "*.json")))
        if not files:
            raise FileNotFoundError(f"VISOR {split}: no annotation files in {annotation_dir}")
        height, width = annotation_size
        self.videos, self.names, self.categories = [], [], {}
        boxes, labels, counts = [], [], []
        for path in files:
            with open(path, encoding="utf-8") as file:
                frames = json.load(file)["video_annotations"]
            for frame in sorted(frames, key=lambda frame: frame["image"]["name"]):
                self.videos.append(frame["image"].get("video") or os.path.basename(path)[: -len(".json")])
                self.names.append(frame["image"]["name"])
                count = 0
                for obj in frame["annotations"]:
                    points = np.array(
                        [point for polygon in obj.get("segments") or [] for point in polygon], np.float32
                    ).reshape(-1, 2)
                    if not len(points):
                        continue
                    (x0, y0), (x1, y1) = points.min(0), points.max(0)
                    y0, x0 = np.clip(y0 / height, 0, 1), np.clip(x0 / width, 0, 1)
                    y1, x1 = np.clip(y1 / height, 0, 1), np.clip(x1 / width, 0, 1)
                    if y1 <= y0 or x1 <= x0:
                        continue  # a point or a line: no area (COCO's reader drops these too)
                    boxes.append((y0, x0, y1 - y0, x1 - x0)), labels.append(int(obj["class_id"]))
                    self.categories.setdefault(int(obj["class_id"]), obj.get("name", str(obj["class_id"])))
                    count += 1
                counts.append(count)
        self.box_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self.boxes = np.array(boxes, np.float32).reshape(-1, 4)
        self.box_labels = np.array(labels, np.int32)
        # (h, w) in pixels of every frame as the boxes are drawn, for COCO's area ranges
        self.sizes = np.tile(np.array(annotation_size, np.int64), (len(self.names), 1))
        self._zips: dict[str, zipfile.ZipFile | None] = {}
        self._lock = threading.Lock()

    def _frames(self, video: str) -> str:
        return os.path.join(self.root, "rgb_frames", self.split, video.split("_")[0], video)

    def _read(self, video: str, name: str) -> bytes:
        folder = self._frames(video)
        if os.path.isdir(folder):
            path = os.path.join(folder, name)
            return open(path, "rb").read() if os.path.exists(path) else b""
        with self._lock:
            if video not in self._zips:
                path = folder + ".zip"
                self._zips[video] = zipfile.ZipFile(path) if os.path.exists(path) else None
            archive = self._zips[video]
        if archive is None:
            return b""
        members = {os.path.basename(member): member for member in archive.namelist()}
        return archive.read(members[name]) if name in members else b""

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        start, stop = self.box_offsets[index], self.box_offsets[index + 1]
        return dict(
            image=self._read(self.videos[index], self.names[index]),
            caption=None,
            key=f"{self.split}/{self.videos[index]}/{self.names[index]}",
            boxes=self.boxes[start:stop].copy(),
            box_labels=self.box_labels[start:stop].copy(),
        )

    def __repr__(self) -> str:
        return f"VISORSource(root={self.root!r}, split={self.split!r}, frames={len(self)}, boxes={len(self.boxes)})"

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_zips"], state["_lock"] = {}, None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
