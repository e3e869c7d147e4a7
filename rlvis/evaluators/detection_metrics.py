"""COCO-style detection metrics, computed by pycocotools (the reference implementation every COCO number uses).

Boxes here are (y0, x0, h, w) fractions of the image, as everywhere in rlvis; they are converted to the pixel
(x, y, w, h) COCO expects with each image's size, so area ranges (small / medium / large) mean what they mean on COCO.
"""

import contextlib
import io

import numpy as np

STATS = ("map", "map50", "map75", "map_small", "map_medium", "map_large")  # the first 6 of COCOeval.stats


def _pixel_xywh(boxes: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    height, width = size
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([boxes[:, 1] * width, boxes[:, 0] * height, boxes[:, 3] * width, boxes[:, 2] * height], axis=1)


def coco_map(ground_truth: list[dict], predictions: list[dict], sizes: np.ndarray) -> dict[str, float]:
    """Average precision over IoU 0.50:0.95 (`map`), at 0.5 and 0.75, and by object size.

    `ground_truth[i]` = dict(boxes [N, 4], labels [N], optionally crowd_boxes [C, 4] and crowd_labels [C]) and
    `predictions[i]` = dict(boxes [K, 4], labels [K], scores [K]) for image i of size `sizes[i]` (h, w). Crowd
    regions are COCO's `iscrowd` annotations: a detection on one is neither a hit nor a false positive.
    pycocotools keeps the 100 best-scoring detections per image. Areas (for the size ranges) are box areas.
    A category with no ground truth in any image is not averaged (COCO's rule); -1 marks a size range that has none.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(ground_truth) != len(predictions) or len(ground_truth) != len(sizes):
        raise ValueError("coco_map: one ground truth, one prediction set and one size per image")
    images, annotations, results = [], [], []
    labels = set()
    for image_id, (truth, predicted, size) in enumerate(zip(ground_truth, predictions, sizes), start=1):
        images.append(dict(id=image_id, height=int(size[0]), width=int(size[1])))
        for crowd, boxes_key, labels_key in ((0, "boxes", "labels"), (1, "crowd_boxes", "crowd_labels")):
            boxes = truth.get(boxes_key, np.zeros((0, 4)))
            for box, label in zip(_pixel_xywh(boxes, size), np.asarray(truth.get(labels_key, [])).reshape(-1)):
                annotations.append(
                    dict(
                        id=len(annotations) + 1,
                        image_id=image_id,
                        category_id=int(label),
                        bbox=[float(v) for v in box],
                        area=float(box[2] * box[3]),
                        iscrowd=crowd,
                    )
                )
                labels.add(int(label))
        for box, label, score in zip(
            _pixel_xywh(predicted["boxes"], size),
            np.asarray(predicted["labels"]).reshape(-1),
            np.asarray(predicted["scores"]).reshape(-1),
        ):
            results.append(
                dict(image_id=image_id, category_id=int(label), bbox=[float(v) for v in box], score=float(score))
            )
            labels.add(int(label))
    if not annotations:
        raise ValueError("coco_map: no ground-truth boxes to score against")
    if not results:
        return {name: 0.0 for name in STATS}  # nothing detected: no precision at any recall
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and the summary table
        truth = COCO()
        truth.dataset = dict(
            images=images, annotations=annotations, categories=[dict(id=label) for label in sorted(labels)]
        )
        truth.createIndex()
        detected = truth.loadRes(results)
        evaluation = COCOeval(truth, detected, "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(STATS, evaluation.stats)}
