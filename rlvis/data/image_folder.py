"""A Grain random-access source over a folder tree of encoded images.

Why: most image collections arrive as plain files. ImageNet-style trees (`root/<class>/.../*.jpg`) give labels for
linear probes (torchvision ImageFolder convention: class = first-level subfolder name, sorted); plain folders of
photos give unlabelled images for self-supervised pre-training; EpicKitchens ships a folder of JPEG frames per
video (`P01/rgb_frames/P01_01/frame_0000000001.jpg`) whose frames we treat as independent images, thinned by
`stride` because neighbouring frames are near-duplicates.

The source only reads bytes: decoding, and skipping of empty or corrupt files, happens later in
rlvis/data/decode.py, so one bad file never stops training. After construction the source is read-only state
(a root and a list of relative paths), so it is thread-safe, picklable into Grain worker processes, and cheap
to pickle.
"""

import os

import numpy as np

DEFAULT_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")


def _raise(error: OSError) -> None:
    raise error


def _scan(root: str, extensions: tuple[str, ...], stride: int) -> list[str]:
    """Sorted '/'-separated paths relative to root, keeping every stride-th image (by name) of each folder."""
    paths = []
    # followlinks: datasets are often symlinked in; onerror: an unreadable folder fails loudly, not silently shrinks
    for folder, _, names in os.walk(root, onerror=_raise, followlinks=True):
        images = sorted(name for name in names if name.lower().endswith(extensions))
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
        paths.extend(prefix + name for name in images[::stride])
    return sorted(paths)  # independent of the file system's listing order


class ImageFolderSource:
    """`source[i]` → dict(image=<file bytes>, caption=None, key=<relative path>, label=<class index or -1>).

    `classes` (sorted names of the first-level subfolders that hold images) and `labels` (int32 [len]) are set
    when every image lies inside a first-level subfolder of root; with any image directly in root both are None
    and labels read -1. EpicKitchens' "classes" are thus its participant folders (P01, ...); pre-training
    ignores them.
    """

    def __init__(self, root: str | os.PathLike, extensions: tuple[str, ...] = DEFAULT_EXTENSIONS, stride: int = 1):
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if not os.fspath(root):  # abspath("") would silently scan the working directory
            raise FileNotFoundError("image folder path is empty")
        self.root = os.path.abspath(os.fspath(root))  # absolute: worker processes may run from another directory
        if isinstance(extensions, str):  # ".jpg" alone, not its characters
            extensions = (extensions,)
        self.extensions = tuple(extension.lower() for extension in extensions)
        self.stride = stride
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f"image folder not found (or not a directory): {self.root}")
        self.paths = _scan(self.root, self.extensions, stride)
        if not self.paths:
            raise FileNotFoundError(f"no images with extensions {self.extensions} under {self.root}")
        self.classes: list[str] | None = None
        self.labels: np.ndarray | None = None
        if all("/" in path for path in self.paths):
            first_level = [path.split("/", 1)[0] for path in self.paths]
            self.classes = sorted(set(first_level))
            index = {name: i for i, name in enumerate(self.classes)}
            self.labels = np.array([index[name] for name in first_level], np.int32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        key = self.paths[index]
        with open(os.path.join(self.root, key), "rb") as file:
            data = file.read()
        label = -1 if self.labels is None else int(self.labels[index])
        return dict(image=data, caption=None, key=key, label=label)

    def __repr__(self) -> str:
        classes = "none" if self.classes is None else len(self.classes)
        return f"ImageFolderSource(root={self.root!r}, images={len(self)}, classes={classes}, stride={self.stride})"
