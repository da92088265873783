"""Shared reading and validation for the dataset readers: one error class, one base Dataset.

Every reader returns ``(image, label)``: ``image`` a float32 tensor (C, H, W) of raw values
(RGB 0..255, depth in the dataset's units, HHA 0..255) and ``label`` an int64 tensor (H, W)
of class indices 0..num_classes-1 with every void value mapped to one ``ignore_index``.
Cheap structural checks (folders, split files, pairing) run in ``__init__``; checks that need
file contents (decoding, sizes, label values) run in ``__getitem__``.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import Dataset

from fcnseg.data.palettes import voc_palette
from fcnseg.errors import FcnsegError
from fcnseg.safe_files import describe_orientation, exif_orientation, too_many_pixels

logger = logging.getLogger(__name__)

Transform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".tif", ".tiff", ".webp")
LABEL_MODES = ("L", "P", "I", "I;16")  # single-channel modes that hold class indices
MAX_LISTED = 5  # how many offending files or values an error message names

# PIL reports broken files through several exception types; a truncated PNG may even raise
# SyntaxError, and decoding only happens on .load().
_PIL_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


class DatasetError(FcnsegError):
    """A dataset on disk is missing, incomplete or malformed; the message names the path."""


def _few(items: Sequence[object]) -> str:
    """The first few items for an error message, with a count of the rest."""
    shown = ", ".join(str(item) for item in items[:MAX_LISTED])
    rest = len(items) - MAX_LISTED
    return shown + (f" (and {rest} more)" if rest > 0 else "")


def require_dir(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise naming it and what it should hold."""
    if not path.is_dir():
        raise DatasetError(f"{what} folder not found: {path}")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise naming it."""
    if not path.is_file():
        raise DatasetError(f"{what} not found: {path}")
    return path


def check_choice(value: str, valid: Iterable[str], what: str, listed: str = "valid") -> str:
    """Return ``value`` if it is one of ``valid``, else raise :class:`DatasetError`:
    ``unknown <what> <value>; <listed>: <the valid ones>``."""
    valid = tuple(valid)
    if value not in valid:
        raise DatasetError(f"unknown {what} {value!r}; {listed}: {', '.join(valid)}")
    return value


def check_split(split: str, valid: Iterable[str]) -> str:
    """Return ``split`` if it is one of ``valid``, else raise naming the valid ones."""
    return check_choice(split, valid, "split", "valid splits")


def read_split(path: Path, expected: str = "") -> list[str]:
    """Ids listed one per line in a split file (blank lines skipped).

    Raises if the file is missing (naming ``expected``, e.g. "SIFT Flow test split (the FCN
    reference's test.txt, 200 ids)"), lists nothing, or lists an id twice.
    """
    if not path.is_file():
        what = f": expected {expected}" if expected else ""
        raise DatasetError(f"split file not found: {path}{what}")
    ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise DatasetError(f"split file {path} lists no images")
    repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) < len(ids) else []
    if repeated:
        raise DatasetError(f"split file {path} lists ids more than once: {_few(repeated)}")
    return ids


def check_split_size(ids: Sequence[str], path: Path | str, expected: int, name: str) -> None:
    """Warn when a named split does not have the length the paper used (a subset, another
    version of the list): the run works, but its figures will not compare to the paper's."""
    if len(ids) != expected:
        logger.warning(
            "%s lists %d ids; the paper's %s split has %d, so its figures will not compare",
            path,
            len(ids),
            name,
            expected,
        )


def require_files(paths: Iterable[Path], what: str) -> None:
    """Raise naming a few of ``paths`` that are not files (``what``: e.g. "label")."""
    missing = [path for path in paths if not path.is_file()]
    if missing:
        raise DatasetError(f"{len(missing)} {what} file(s) missing: {_few(missing)}")


def pair_by_stem(
    image_dir: Path,
    label_dir: Path,
    image_exts: Sequence[str] = IMAGE_EXTENSIONS,
    label_exts: Sequence[str] = (".png",),
) -> list[tuple[Path, Path]]:
    """Pair the files of two folders by file stem, sorted by stem.

    Raises naming the folder when it holds no files, naming duplicate stems, and naming a few
    images without a label and labels without an image.
    """

    def by_stem(folder: Path, exts: Sequence[str], what: str) -> dict[str, Path]:
        found: dict[str, Path] = {}
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.suffix.lower() in exts:
                if path.stem in found:
                    raise DatasetError(f"two {what} files share a stem: {found[path.stem]}, {path}")
                found[path.stem] = path
        if not found:
            raise DatasetError(f"no {what} files ({', '.join(exts)}) in {folder}")
        return found

    images = by_stem(image_dir, image_exts, "image")
    labels = by_stem(label_dir, label_exts, "label")
    unlabelled = [images[s].name for s in sorted(images.keys() - labels.keys())]
    if unlabelled:
        raise DatasetError(
            f"{len(unlabelled)} image(s) in {image_dir} have no label in {label_dir}: "
            f"{_few(unlabelled)}"
        )
    orphans = [labels[s].name for s in sorted(labels.keys() - images.keys())]
    if orphans:
        raise DatasetError(
            f"{len(orphans)} label(s) in {label_dir} have no image in {image_dir}: {_few(orphans)}"
        )
    return [(images[stem], labels[stem]) for stem in sorted(images)]


def decode_image(path: Path) -> Image.Image:
    """Open and fully decode an image (PIL decodes lazily), naming the file on failure.

    Images over :func:`fcnseg.safe_files.max_pixels` are refused from their header, before
    decoding (decompression bombs).
    """
    try:
        with warnings.catch_warnings():  # our own limit below decides, with a clear message
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        message = too_many_pixels(image.size, path)
        if message is None:
            image.load()
    except FileNotFoundError as err:
        raise DatasetError(f"image file not found: {path}") from err
    except Image.DecompressionBombError as err:  # past PIL's own hard limit
        raise DatasetError(
            f"{path}: {err}; raise the limit with --max-pixels N if the image is genuine"
        ) from err
    except _PIL_ERRORS as err:
        raise DatasetError(f"cannot read image {path}: {err}") from err
    if message is not None:
        image.close()
        raise DatasetError(message)
    return image


def read_rgb(path: Path, apply_exif: bool = False) -> Tensor:
    """An image file as float32 (3, H, W), R, G, B order, values 0..255 (grey is replicated).

    ``apply_exif``: turn the pixels as the file's EXIF orientation tag says (as image
    viewers show it); the dataset readers keep the stored pixels, which their labels match.
    """
    image = decode_image(path)
    if apply_exif:
        image = ImageOps.exif_transpose(image)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1).contiguous()


def read_array(path: Path) -> np.ndarray:
    """An image file's stored values, unconverted: (H, W) or (H, W, C), its own dtype."""
    return np.array(decode_image(path))


def read_label_png(path: Path) -> np.ndarray:
    """A single-channel label PNG as (H, W) raw values; for palette ("P") PNGs the indices."""
    image = decode_image(path)
    if image.mode not in LABEL_MODES:
        raise DatasetError(
            f"label {path} has mode {image.mode}; expected a single-channel index image "
            f"({', '.join(LABEL_MODES)}), not colours"
        )
    return np.array(image)


def read_mat(path: Path, key: str, field: str | None = None) -> np.ndarray:
    """The array ``key`` (or the field ``field`` of the 1x1 struct ``key``) of a MATLAB 5 file.

    Needs scipy, imported here so the rest of the package works without it.
    """
    try:
        import scipy.io
    except ImportError as err:
        raise ImportError(
            f"reading {path} needs scipy (MATLAB .mat labels): pip install scipy"
        ) from err
    if not path.is_file():
        raise DatasetError(f"file not found: {path}")
    try:
        mat = scipy.io.loadmat(path, variable_names=[key], simplify_cells=True)
    except Exception as err:  # scipy raises many types (MatReadError, OSError, zlib, ...)
        raise DatasetError(f"cannot read MATLAB file {path}: {type(err).__name__}: {err}") from err
    if key not in mat:
        found = sorted(name for name, _, _ in scipy.io.whosmat(path))
        raise DatasetError(f"{path} has no variable {key!r} (found: {found or 'none'})")
    value = mat[key]
    if field is not None:
        if not isinstance(value, dict) or field not in value:
            fields = sorted(value) if isinstance(value, dict) else type(value).__name__
            raise DatasetError(f"{path}: {key!r} has no field {field!r} (found: {fields})")
        value = value[field]
    if not isinstance(value, np.ndarray) or value.ndim != 2:
        shape = getattr(value, "shape", type(value).__name__)
        raise DatasetError(f"{path}: {key}{'.' + field if field else ''} is {shape}, not 2-D")
    return value


def map_labels(
    raw: np.ndarray,
    path: Path,
    num_classes: int,
    ignore_index: int,
    void: Sequence[int] = (),
    shift: int = 0,
) -> Tensor:
    """Map raw label values to class indices: raw ``shift + k`` -> k, every ``void`` -> ignore.

    Returns int64 (H, W). Raises naming ``path``, the offending values and the valid range
    when a value is neither a class nor void (or is not an integer).
    """
    if raw.dtype.kind == "f":
        if not np.all(np.isfinite(raw)) or not np.array_equal(raw, np.round(raw)):
            raise DatasetError(f"label {path} holds non-integer values")
    elif raw.dtype.kind not in "iub":
        raise DatasetError(f"label {path} has dtype {raw.dtype}; expected integers")
    raw = raw.astype(np.int64)
    label = raw - shift
    is_void = np.isin(raw, np.asarray(void, dtype=np.int64))
    bad = ~is_void & ((label < 0) | (label >= num_classes))
    if bad.any():
        values = np.unique(raw[bad]).tolist()
        void_text = f" or void ({', '.join(map(str, void))})" if void else ""
        raise DatasetError(
            f"label {path} has values {_few(values)} that are neither classes "
            f"({shift}..{shift + num_classes - 1}){void_text}"
        )
    label[is_void] = ignore_index
    return torch.from_numpy(label)


def check_sizes(sizes: dict[Path, tuple[int, int]]) -> None:
    """Raise naming every file and its (H, W) when the files' sizes differ."""
    if len(set(sizes.values())) > 1:
        listed = ", ".join(f"{path} is {h}x{w}" for path, (h, w) in sizes.items())
        turned = [
            f"{path} has {describe_orientation(exif_orientation(path))}"
            for path in sizes
            if Path(path).suffix.lower() in IMAGE_EXTENSIONS and exif_orientation(path) != 1
        ]
        note = (
            f"; {'; '.join(turned)}, but the stored pixels are read: rotate the file itself to "
            "match its label"
            if turned
            else ""
        )
        raise DatasetError(f"image and label sizes differ (HxW): {listed}{note}")


def resolve_year_dir(root: Path, year: str, what: str = "VOC") -> Path:
    """``root`` itself when it is a VOC year folder (holds JPEGImages), else ``root/VOC{year}``.

    So both ``VOCdevkit`` and ``VOCdevkit/VOC2012`` are accepted.
    """
    require_dir(root, f"{what} root")
    if (root / "JPEGImages").is_dir():
        named = re.fullmatch(r"VOC(\d{4})", root.name)
        if named and named.group(1) != year:
            raise DatasetError(f"{what} root {root} is VOC{named.group(1)}, but year={year!r}")
        return root
    year_dir = root / f"VOC{year}"
    if not (year_dir / "JPEGImages").is_dir():
        raise DatasetError(
            f"{what} root {root} is neither a VOCdevkit folder holding VOC{year}/JPEGImages "
            f"nor a VOC{year} folder holding JPEGImages"
        )
    return year_dir


class SegmentationDataset(Dataset):
    """The shared contract; a subclass fills ``files`` and implements ``_load(i)``.

    Attributes: ``root``, ``split``, ``classes``, ``num_classes``, ``palette`` (one RGB per
    class), ``ignore_index``, ``files`` (one ``(image path, label path)`` per sample).
    """

    classes: list[str]
    palette: list[tuple[int, int, int]]

    def __init__(
        self,
        root: str | Path,
        split: str,
        classes: Sequence[str],
        ignore_index: int = 255,
        transform: Transform | None = None,
        palette: Sequence[tuple[int, int, int]] | None = None,
    ) -> None:
        self.root = Path(root)
        self.split = split
        self.classes = list(classes)
        self.num_classes = len(self.classes)
        if not isinstance(ignore_index, int) or 0 <= ignore_index < self.num_classes:
            raise ValueError(
                f"ignore_index={ignore_index!r} collides with a class index "
                f"(0..{self.num_classes - 1}); use an int outside that range, e.g. 255"
            )
        self.ignore_index = ignore_index
        self.transform = transform
        self.palette = list(palette) if palette is not None else voc_palette(self.num_classes)
        self.files: list[tuple[Path, Path]] = []

    def _load(self, index: int) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        """The pair ``(image (C, H, W) float32, label (H, W) int64)``, transformed if asked."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        image, label = self._load(index % len(self))
        if self.transform is not None:
            image, label = self.transform(image, label)
        return image, label

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(root={str(self.root)!r}, split={self.split!r}, "
            f"samples={len(self)}, num_classes={self.num_classes})"
        )


def load_pair(image_path: Path, label: np.ndarray, label_path: Path) -> Tensor:
    """Read the RGB image and check its size against an already read raw label."""
    image = read_rgb(image_path)
    check_sizes({image_path: tuple(image.shape[1:]), label_path: label.shape[:2]})
    return image
