"""Your own data: a folder of images and a folder of label PNGs, matched by file stem.

On disk::

    images_dir/NAME.{jpg,jpeg,png,bmp,ppm,tif,tiff,webp}
    labels_dir/NAME.png     single-channel index PNG (mode L, P or 16-bit): 0..n-1 classes,
                            ``ignore_index`` (default 255) for pixels to ignore
    classes_file            one class per line, in index order, optionally with its colour:

        # lines starting with '#' and blank lines are skipped
        background 0 0 0
        road 128 64 128
        traffic sign 220 220 0     (a name may hold spaces; the last three fields are R G B)

Give a colour on every line or on none (then the VOC palette is used).
"""

from __future__ import annotations

import logging
from pathlib import Path

from torch import Tensor

from fcnseg.data.common import (
    DatasetError,
    SegmentationDataset,
    Transform,
    load_pair,
    map_labels,
    pair_by_stem,
    read_label_png,
    require_dir,
    require_file,
)

logger = logging.getLogger(__name__)


def _colour(fields: list[str]) -> tuple[int, int, int] | None:
    """The trailing "R G B" of a line's fields, if there are a name and three bytes."""
    if len(fields) < 4 or not all(f.isdigit() and int(f) <= 255 for f in fields[-3:]):
        return None
    red, green, blue = (int(f) for f in fields[-3:])
    return red, green, blue


def read_classes_file(path: Path) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """Class names and, when every line gives one, their colours; see the module docstring.

    The one reader of classes files: dataset folders and ``fcnseg import-caffe --classes``.
    """
    require_file(path, "classes file")
    names: list[str] = []
    colours: list[tuple[int, int, int] | None] = []
    for line in path.read_text().splitlines():
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        colour = _colour(fields)
        names.append(" ".join(fields[:-3]) if colour else " ".join(fields))
        colours.append(colour)
    if not names:
        raise DatasetError(f"classes file {path} lists no classes")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise DatasetError(f"classes file {path} repeats class names: {duplicates}")
    given = [c for c in colours if c is not None]
    if given and len(given) != len(colours):
        missing = [name for name, c in zip(names, colours, strict=True) if c is None]
        raise DatasetError(
            f"classes file {path} gives colours for some classes but not for {missing[:5]}; "
            "give 'name R G B' on every line or on none"
        )
    return names, (given or None)


class LabelFolder(SegmentationDataset):
    """Images and label PNGs matched by stem, with classes from a text file.

    Label values outside 0..n-1 that are not ``ignore_index`` raise. ``root`` is
    ``images_dir`` and ``split`` its folder name. Items: image float32 (3, H, W) RGB 0..255;
    label int64 (H, W) in 0..n-1 or ``ignore_index``.
    """

    def __init__(
        self,
        images_dir: str | Path,
        labels_dir: str | Path,
        classes_file: str | Path,
        ignore_index: int = 255,
        transform: Transform | None = None,
    ) -> None:
        classes, palette = read_classes_file(Path(classes_file))
        images_dir = Path(images_dir)
        super().__init__(images_dir, images_dir.name, classes, ignore_index, transform, palette)
        self.labels_dir = Path(labels_dir)
        self.classes_file = Path(classes_file)
        require_dir(images_dir, "image")
        require_dir(self.labels_dir, "label")
        self.files = pair_by_stem(images_dir, self.labels_dir)
        logger.debug("LabelFolder: %d pairs from %s", len(self.files), images_dir)

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        image_path, label_path = self.files[index]
        raw = read_label_png(label_path)
        image = load_pair(image_path, raw, label_path)
        ignore = self.ignore_index
        return image, map_labels(raw, label_path, self.num_classes, ignore, (ignore,))
