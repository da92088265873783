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

import torch

from fcnseg.interop.caffe import write_caffemodel
from fcnseg.models import create_model
from fcnseg.models.surgery import TORCHVISION_VGG16_CONVS, TORCHVISION_VGG16_FCS, VGG16_CONV_NAMES

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


# --------------------------------------------------------------------------- archives


def pack(folder: Path, prefix: str, kind: str, skip: tuple[str, ...] = ()) -> bytes:
    """Every file under ``folder`` as a ``kind`` ("tar", "tgz" or "zip") archive, named
    ``prefix/<path relative to folder>`` as the publisher's archive names them; ``skip``: file
    names left out (split lists served separately)."""
    out = io.BytesIO()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in skip)
    if kind == "zip":
        with zipfile.ZipFile(out, "w") as archive:
            for path in files:
                archive.write(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    else:
        with tarfile.open(fileobj=out, mode="w:gz" if kind == "tgz" else "w") as archive:
            for path in files:
                archive.add(path, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return out.getvalue()


def hostile_tar() -> bytes:
    """A tar whose second member climbs out of the target folder."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name in ("VOCdevkit/VOC2012/README", "VOCdevkit/../../../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 1
            archive.addfile(info, io.BytesIO(b"x"))
    return out.getvalue()


# --------------------------------------------------------------------------- weights


def random_tensors(shapes: dict[str, tuple[int, ...]], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=generator) * 0.1 for k, s in shapes.items()}


def torchvision_vgg16_state(width: float = WIDTH, seed: int = 1) -> dict[str, torch.Tensor]:
    """A torchvision-format VGG16 classifier state dict (features.N, classifier.0/3/6) at
    ``width``, random weights, 10 ImageNet "classes"."""
    net = create_model("fcn32s", num_classes=1, width=width)
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
    net = create_model(arch, num_classes=num_classes, width=WIDTH).eval()
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
