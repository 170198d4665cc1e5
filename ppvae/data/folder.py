"""Your own images: a directory of PNG / JPEG files, as torchvision's ``ImageFolder`` reads one.

``data.name = "folder"`` with ``data.path = DIR``. Images directly in DIR are unlabelled; images in
sub-directories of DIR (``DIR/cat/1.png``, ``DIR/dog/7.jpg``) are labelled by their sub-directory, classes in
sorted order (``data.classes``). ``size`` (an int or ``[height, width]``) resizes every image on load (bilinear);
without it the images must share one size. ``mode``: ``grey``, ``rgb`` or ``auto`` (grey when every image is
grey). The decoded array is cached as one file in ``~/.cache/ppvae/folder/`` (``PPVAE_CACHE`` overrides the
directory), keyed by the files' names, sizes and modification times and the options, so a second load reads one
file.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from ..registry import DATASETS, int_option
from .dataset import Dataset, as_float_tensor, split_arrays

EXTENSIONS = (".png", ".jpg", ".jpeg")
MODES = ("auto", "grey", "rgb")
_GREY = ("1", "L", "LA", "I", "I;16", "F", "P")  # P: checked below, a palette may be colour


def _files(root: Path) -> tuple[list[Path], list[int] | None, list[str] | None]:
    def images(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)

    top = images(root)
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and images(d))
    if classes and top:
        raise ValueError(f"image folder {str(root)!r} has {len(top)} images at its top level beside class "
                         f"sub-folders ({', '.join(classes[:5])}); put every image in a class sub-folder, or none")
    if classes:
        files, labels = [], []
        for k, name in enumerate(classes):
            found = images(root / name)
            files += found
            labels += [k] * len(found)
        return files, labels, classes
    if not top:
        raise ValueError(f"image folder {str(root)!r} has no images (PNG or JPEG: {', '.join(EXTENSIONS)}) at its "
                         f"top level or in sub-folders")
    return top, None, None


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise ValueError(f"could not decode image {str(path)!r} ({type(e).__name__}: {e}); "
                         f"remove or replace it") from None


def _is_grey(image) -> bool:
    if image.mode == "P":
        image = image.convert("RGB")
    if image.mode in _GREY:
        return True
    rgb = np.asarray(image.convert("RGB"))
    return bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())


def _size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (list, tuple)):
        if len(size) != 2:
            raise ValueError(f"data.size must be an integer or [height, width], got {size!r}")
        return int_option(size[0], 4, "data.size height"), int_option(size[1], 4, "data.size width")
    s = int_option(size, 4, "data.size")
    return s, s


def _decode(files: list[Path], size: tuple[int, int] | None, mode: str, root: Path) -> np.ndarray:
    images = [_open(f) for f in files]
    if size is None:
        sizes = {}
        for f, im in zip(files, images):
            sizes.setdefault(im.size, f)
        if len(sizes) > 1:
            (s1, f1), (s2, f2) = list(sizes.items())[:2]
            raise ValueError(f"the images in {str(root)!r} have different sizes ({f1.name} is {s1[1]}x{s1[0]}, "
                             f"{f2.name} is {s2[1]}x{s2[0]}, height x width); set data.size (e.g. "
                             f"--set data.size=32 or data.size=[{s1[1]}, {s1[0]}]) to resize them on load")
    if mode == "auto":
        mode = "grey" if all(_is_grey(im) for im in images) else "rgb"
    pil_mode = "L" if mode == "grey" else "RGB"
    arrays = []
    for im in images:
        im = im.convert(pil_mode)
        if size is not None and im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), resample=2)  # PIL's BILINEAR
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    return np.stack(arrays)


def _cache_path(root: Path, files: list[Path], size, mode: str) -> Path:
    key = hashlib.sha1(json.dumps({
        "root": str(root), "size": size, "mode": mode,
        "files": [(str(f.relative_to(root)), f.stat().st_size, f.stat().st_mtime_ns) for f in files],
    }).encode()).hexdigest()[:20]
    base = Path(os.environ.get("PPVAE_CACHE", Path.home() / ".cache" / "ppvae"))
    return base / "folder" / f"{key}.npz"


@DATASETS.register("folder")
def image_folder(*, path: str | None = None, size=None, mode: str = "auto", test_fraction: float,
                 split_seed: int) -> Dataset:
    """A directory of PNG / JPEG images (class sub-folders give labels), resized to ``size``, grey or RGB."""
    if path is None:
        raise ValueError("dataset 'folder' needs path=<a directory of PNG or JPEG images> (CLI: --set data.path=DIR)")
    if mode not in MODES:
        raise ValueError(f"data.mode must be one of {', '.join(MODES)}, got {mode!r}")
    root = Path(path).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {str(root)!r} does not exist or is not a directory")
    hw = _size(size)
    files, labels, classes = _files(root)
    cache = _cache_path(root, files, hw, mode)
    if cache.is_file():
        with np.load(cache) as stored:
            x = stored["x"]
    else:
        x = _decode(files, hw, mode, root)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, x=x)
        os.replace(tmp, cache)
    y = None if labels is None else torch.tensor(labels)
    data = split_arrays(as_float_tensor(x, str(root)), y, "folder", str(root), test_fraction, split_seed,
                        classes=classes)
    data.spec = {"path": str(root), **({"size": list(hw)} if hw else {}), "mode": mode}
    return data
