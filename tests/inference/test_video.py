"""Videos: a clip written here goes through segment_video and the CLI; frame count, frame
rate and size survive; label PNGs equal the labels of the decoded frames."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image
from segment_fixtures import CLASSES, random_fcn

import fcnseg
from fcnseg.cli import main
from fcnseg.data.synthetic import make_sample

av = pytest.importorskip("av", reason="PyAV (the 'video' extra) is not installed")

from fcnseg.inference.tta import SegmentError  # noqa: E402
from fcnseg.inference.video import segment_video, video_info  # noqa: E402

FRAMES, FPS, WIDTH, HEIGHT = 10, 12, 64, 48


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """10 frames of moving shapes, 64 x 48 at 12 fps, H.264 in MP4."""
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for i in range(FRAMES):
            image, _ = make_sample(i, HEIGHT, WIDTH)
            rgb = image.round().byte().permute(1, 2, 0).numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def decoded(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def model():
    return random_fcn()


def test_label_and_overlay_videos_keep_count_rate_and_size(model, clip, tmp_path):
    ticks = []
    result = segment_video(model, clip, tmp_path, batch_size=4,
                           progress=lambda total, unit: _Bar(ticks, total, unit))  # fmt: skip
    assert (result.frames, result.fps, result.size) == (FRAMES, Fraction(FPS), (WIDTH, HEIGHT))
    assert ticks[:2] == [FRAMES, "frame"] and sum(ticks[2:]) == FRAMES
    labels_video, overlay_video, legend = result.written
    assert (labels_video.name, overlay_video.name) == ("clip_labels.mp4", "clip_overlay.mp4")
    for video in (labels_video, overlay_video):
        assert video_info(video) == (FRAMES, Fraction(FPS), (WIDTH, HEIGHT))
        with av.open(str(video)) as container:
            assert container.streams.video[0].codec_context.name == "h264"
    present = set()
    for frame in decoded(clip):
        present |= set(fcnseg.segment(model, frame).unique().tolist())
    assert result.classes == [CLASSES[i] for i in sorted(present)]
    assert legend.name == "clip_legend.png" and Image.open(legend).size[1] > 14


def test_frames_give_exact_label_pngs(model, clip, tmp_path):
    result = segment_video(model, clip, tmp_path, frames=True, batch_size=3)
    folder = tmp_path / "clip_labels"
    pngs = sorted(folder.iterdir())
    assert [p.name for p in pngs] == [f"{i:06d}.png" for i in range(FRAMES)]
    for png, frame in zip(pngs, decoded(clip)):
        with Image.open(png) as label:
            assert torch.equal(torch.from_numpy(np.array(label)), fcnseg.segment(model, frame))
    assert not (tmp_path / "clip_labels.mp4").exists()
    assert video_info(tmp_path / "clip_overlay.mp4")[0] == FRAMES == result.frames


def test_cli_predicts_a_video(model, clip, tmp_path, capsys):
    checkpoint = fcnseg.save(model, tmp_path / "net.pt")
    out = tmp_path / "out"
    code = main(["predict", str(clip), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--device", "cpu", "--batch-size", "5"])  # fmt: skip
    assert code == 0
    assert f"{FRAMES} frames at 12 fps, 64 x 48" in capsys.readouterr().out
    assert video_info(out / "clip_overlay.mp4") == (FRAMES, Fraction(FPS), (WIDTH, HEIGHT))
    assert main(["predict", str(clip), "--checkpoint", str(checkpoint), "--out", str(out),
                 "--frames"]) == 0  # fmt: skip
    assert len(list((out / "clip_labels").glob("*.png"))) == FRAMES


def test_bad_videos(model, tmp_path):
    with pytest.raises(SegmentError, match="video file not found"):
        segment_video(model, tmp_path / "none.mp4", tmp_path)
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"not a video at all")
    with pytest.raises(SegmentError, match="cannot read video .*fake.mp4"):
        segment_video(model, fake, tmp_path / "out")
    assert not list((tmp_path).glob("out/*.mp4"))


class _Bar:
    def __init__(self, ticks, total, unit):
        self.ticks = ticks
        ticks.extend([total, unit])

    def update(self, n):
        self.ticks.append(n)

    def close(self):
        pass
