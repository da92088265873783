"""The weight files fcnseg knows: one frozen :class:`WeightsEntry` each, listed in :data:`WEIGHTS`.

Two kinds of entry:

- ImageNet classifiers that fill a backbone (``fills="backbone"``): torchvision's published
  files (their file names carry the first 8 hex digits of the file's SHA-256, torch.hub's
  convention, checked on download) and the VGG16 ILSVRC caffemodel the reference FCNs started
  from. A torchvision state dict is mapped onto our layer names by the pure functions beside
  each backbone (``from_torchvision_vgg16``: fc6/fc7 reshaped into kernels; ResNet and
  MobileNetV3 keep torchvision's names); a caffemodel goes through :mod:`fcnseg.interop`.
- The reference FCNs of fcn.berkeleyvision.org (``fills="net"``), each the URL in its net
  folder's ``caffemodel-url`` file. The publisher gives no checksums for these: the SHA-256 of
  the first download is recorded in the cache and shown by ``fcnseg weights``. Each is
  converted once by the Caffe importer and cached as an fcnseg checkpoint.

Sizes are the publishers' (torchvision's ``_file_size``, MiB) or estimates from the parameter
count (4 bytes each) where none is published; they are shown in listings and used to check free
space before connecting (the server's ``Content-Length`` is checked again once it answers).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from fcnseg.hub.download import Checksum, HubError

MIB = 1 << 20
# torch.hub's rule for a hash in a file name: "name-<hex>.ext" (torch.hub.HASH_REGEX).
HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")
FORMATS = ("torchvision", "caffemodel")
FILLS = ("backbone", "net")
PREPROCESSING = ("imagenet", "caffe")  # ImageNet RGB mean/std on 0..1; BGR minus mean on 0..255
TORCHVISION = "torchvision file name (torch.hub hash-prefix convention)"
UNVERIFIED = "unverified: recorded on first download"


class UnknownWeightsError(HubError):
    """A weights name that is not in the registry (and not an existing file)."""


@dataclass(frozen=True)
class WeightsEntry:
    """One published weight file and what it is for.

    ``backbone``: the family it fills or was trained on ("vgg16", "resnet50", ...).
    ``arch``: for whole nets, the fcnseg builder it converts to (a name that
    ``fcnseg.models.list_models()`` gives).
    ``sha256``: the full published digest, or ``None``; torchvision files carry a prefix of
    it in the file name instead (:attr:`checksum`). ``dataset``/``head``/``tower``/``modality``:
    for whole nets, what the Caffe importer needs (classes, input mean, one head or tower).
    """

    name: str
    url: str
    size: int  # bytes, approximate (see module docstring)
    format: str  # torchvision | caffemodel
    fills: str  # backbone | net
    backbone: str
    preprocessing: str  # imagenet | caffe
    description: str
    arch: str | None = None
    num_classes: int | None = None
    dataset: str | None = None
    head: str | None = None
    tower: str | None = None
    modality: str | None = None  # NYUDv2 input: rgb | hha (sets the recorded input mean)
    sha256: str | None = None
    checksum_source: str = UNVERIFIED

    def __post_init__(self) -> None:
        if self.format not in FORMATS or self.fills not in FILLS:
            raise ValueError(f"{self.name}: format {self.format!r} / fills {self.fills!r}")
        if self.preprocessing not in PREPROCESSING:
            raise ValueError(f"{self.name}: preprocessing {self.preprocessing!r}")
        if self.fills == "net" and (self.arch is None or self.num_classes is None):
            raise ValueError(f"{self.name}: a whole net needs arch and num_classes")

    @property
    def file_name(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name

    @property
    def checksum(self) -> Checksum | None:
        """The published digest: the full SHA-256, or torchvision's prefix in the file name."""
        if self.sha256:
            return Checksum("sha256", self.sha256, self.checksum_source)
        if self.format == "torchvision":
            found = HASH_IN_NAME.search(self.file_name)
            if found and found.group(1):
                return Checksum("sha256", found.group(1), self.checksum_source)
        return None

    @property
    def classes(self) -> list[str] | None:
        """Class names in output order (whole nets), from the dataset's reader."""
        if self.dataset is None:
            return None
        from fcnseg.interop.caffe_import import _dataset_classes

        return _dataset_classes(self.dataset, self.head)

    @property
    def palette(self) -> list[tuple[int, int, int]] | None:
        """One RGB colour per class (whole nets): the VOC colour map over the classes."""
        if self.num_classes is None:
            return None
        from fcnseg.data.palettes import voc_palette

        return voc_palette(self.num_classes)


def _tv(name: str, file: str, backbone: str, mib: float, what: str) -> WeightsEntry:
    return WeightsEntry(
        name=name,
        url=f"https://download.pytorch.org/models/{file}",
        size=int(mib * MIB),
        format="torchvision",
        fills="backbone",
        backbone=backbone,
        preprocessing="imagenet",
        description=f"{what}, ImageNet-1k (torchvision IMAGENET1K_V1)",
        checksum_source=TORCHVISION,
    )


CAFFE_DL = "http://dl.caffe.berkeleyvision.org/"
VGG16_FCN_BYTES = 538_000_000  # ~134.5 M parameters x 4 bytes (estimate: none published)


def _fcn(
    name: str,
    file: str,
    arch: str,
    num_classes: int,
    dataset: str,
    what: str,
    size: int = VGG16_FCN_BYTES,
    backbone: str = "vgg16",
    head: str | None = None,
    modality: str | None = None,
) -> WeightsEntry:
    return WeightsEntry(
        name=name,
        url=CAFFE_DL + file,
        size=size,
        format="caffemodel",
        fills="net",
        backbone=backbone,
        preprocessing="caffe",
        description=what,
        arch=arch,
        num_classes=num_classes,
        dataset=dataset,
        head=head,
        modality=modality,
    )


WEIGHTS: tuple[WeightsEntry, ...] = (
    # ---- ImageNet backbones (torchvision); file names from torchvision.models' Weights enums
    _tv("vgg16-imagenet", "vgg16-397923af.pth", "vgg16", 527.796, "VGG16"),
    _tv("resnet18-imagenet", "resnet18-f37072fd.pth", "resnet18", 44.661, "ResNet-18"),
    _tv("resnet34-imagenet", "resnet34-b627a593.pth", "resnet34", 83.275, "ResNet-34"),
    _tv("resnet50-imagenet", "resnet50-0676ba61.pth", "resnet50", 97.781, "ResNet-50"),
    _tv("resnet101-imagenet", "resnet101-63fe2227.pth", "resnet101", 170.511, "ResNet-101"),
    _tv(
        "mobilenet_v3_large-imagenet",
        "mobilenet_v3_large-8738ca79.pth",
        "mobilenet_v3_large",
        21.114,
        "MobileNetV3-Large",
    ),
    # ---- the VGG16 the reference FCNs started from (Simonyan & Zisserman's Caffe release)
    WeightsEntry(
        name="vgg16-caffe",
        url="http://www.robots.ox.ac.uk/~vgg/software/very_deep/caffe/VGG_ILSVRC_16_layers.caffemodel",
        size=553_432_081,
        format="caffemodel",
        fills="backbone",
        backbone="vgg16",
        preprocessing="caffe",
        description="VGG16 ILSVRC-2014 (Caffe, BGR minus mean): the reference FCNs' start",
    ),
    # ---- the reference FCNs (fcn.berkeleyvision.org, <net>/caffemodel-url)
    _fcn("voc-fcn32s", "fcn32s-heavy-pascal.caffemodel", "fcn32s", 21, "voc", "FCN-32s, VOC"),
    _fcn("voc-fcn16s", "fcn16s-heavy-pascal.caffemodel", "fcn16s", 21, "voc", "FCN-16s, VOC"),
    _fcn(
        "voc-fcn8s",
        "fcn8s-heavy-pascal.caffemodel",
        "fcn8s",
        21,
        "voc",
        "FCN-8s, VOC (reference: 65.5 mean IU on seg11valid)",
    ),
    _fcn(
        "voc-fcn8s-atonce",
        "fcn8s-atonce-pascal.caffemodel",
        "fcn8s_atonce",
        21,
        "voc",
        "FCN-8s at once, VOC",
    ),
    _fcn(
        "voc-fcn-alexnet",
        "fcn-alexnet-pascal.caffemodel",
        "fcn_alexnet",
        21,
        "voc",
        "FCN-AlexNet, VOC",
        size=228_000_000,  # ~57 M parameters
        backbone="alexnet",
    ),
    _fcn(
        "pascalcontext-fcn32s",
        "pascalcontext-fcn32s-heavy.caffemodel",
        "fcn32s",
        60,
        "context",
        "FCN-32s, PASCAL-Context 59 classes + background",
    ),
    _fcn(
        "pascalcontext-fcn16s",
        "pascalcontext-fcn16s-heavy.caffemodel",
        "fcn16s",
        60,
        "context",
        "FCN-16s, PASCAL-Context 59 classes + background",
    ),
    _fcn(
        "pascalcontext-fcn8s",
        "pascalcontext-fcn8s-heavy.caffemodel",
        "fcn8s",
        60,
        "context",
        "FCN-8s, PASCAL-Context 59 classes + background",
    ),
    _fcn(
        "siftflow-fcn32s",
        "siftflow-fcn32s-heavy.caffemodel",
        "fcn32s",
        33,
        "siftflow",
        "FCN-32s, SIFT Flow semantic head (33 classes)",
        head="sem",
    ),
    _fcn(
        "siftflow-fcn16s",
        "siftflow-fcn16s-heavy.caffemodel",
        "fcn16s",
        33,
        "siftflow",
        "FCN-16s, SIFT Flow semantic head (33 classes)",
        head="sem",
    ),
    _fcn(
        "siftflow-fcn8s",
        "siftflow-fcn8s-heavy.caffemodel",
        "fcn8s",
        33,
        "siftflow",
        "FCN-8s, SIFT Flow semantic head (33 classes)",
        head="sem",
    ),
    _fcn(
        "nyud-fcn32s-color",
        "nyud-fcn32s-color-heavy.caffemodel",
        "fcn32s",
        40,
        "nyud",
        "FCN-32s, NYUDv2 40 classes, RGB input",
        modality="rgb",
    ),
    _fcn(
        "nyud-fcn32s-hha",
        "nyud-fcn32s-hha-heavy.caffemodel",
        "fcn32s",
        40,
        "nyud",
        "FCN-32s, NYUDv2 40 classes, HHA input",
        modality="hha",
    ),
)

# The backbone family of each builder, and the ImageNet entry per family and preprocessing.
ARCH_BACKBONES = {
    "fcn32s": "vgg16",
    "fcn16s": "vgg16",
    "fcn8s": "vgg16",
    "fcn4s": "vgg16",
    "fcn2s": "vgg16",
    "fcn8s_atonce": "vgg16",
    "fcn_alexnet": "alexnet",
    "fcn_googlenet": "googlenet",
    "fcn8s_resnet18": "resnet18",
    "fcn8s_resnet34": "resnet34",
    "fcn8s_resnet50": "resnet50",
    "fcn8s_resnet101": "resnet101",
    "fcn8s_mobilenet_v3_large": "mobilenet_v3_large",
    "fcn32s_two_headed": "vgg16",  # SIFT Flow's two-headed nets share the VGG16 trunk
    "fcn16s_two_headed": "vgg16",
    "fcn8s_two_headed": "vgg16",
}


def names() -> list[str]:
    return [entry.name for entry in WEIGHTS]


def find(name: str) -> WeightsEntry:
    """The entry called ``name``; :class:`UnknownWeightsError` listing the known ones."""
    for entry in WEIGHTS:
        if entry.name == name:
            return entry
    raise UnknownWeightsError(
        f"unknown weights {name!r} (not a registered name nor an existing file); "
        f"known: {', '.join(names())}"
    )


def imagenet_entry(arch: str, preprocessing: str | None = None) -> WeightsEntry:
    """The ImageNet classifier for ``arch``'s backbone.

    For VGG16 two exist: torchvision's (ImageNet normalisation) and the reference's Caffe
    VGG16 (BGR minus mean on 0..255); ``preprocessing="caffe"`` picks the Caffe one, anything
    else torchvision's.
    """
    family = ARCH_BACKBONES.get(arch)
    matching = [e for e in WEIGHTS if e.fills == "backbone" and e.backbone == family]
    if not matching:
        raise UnknownWeightsError(
            f"no ImageNet weights for {arch!r} (backbone {family or 'unknown'}); available for: "
            + ", ".join(
                a
                for a, f in ARCH_BACKBONES.items()
                if any(e.backbone == f for e in WEIGHTS if e.fills == "backbone")
            )
        )
    wanted = "caffe" if preprocessing == "caffe" else "imagenet"
    for entry in matching:
        if entry.preprocessing == wanted:
            return entry
    return matching[0]
