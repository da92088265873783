"""Segment a video, frame by frame in batches, through PyAV (FFmpeg's Python binding).

:func:`segment_video` reads ``clip.mp4`` (any container and codec FFmpeg decodes) and writes
into ``out_dir``:

- ``clip_labels.mp4``: each frame's label map in the palette's colours, or, with
  ``frames=True``, ``clip_labels/000000.png ...``: indexed PNGs whose values are class
  indices (video codecs are lossy, so only the PNGs keep exact labels);
- ``clip_overlay.mp4``: the frames with the class colours blended in;
- ``clip_legend.png``: a legend of the classes present anywhere in the clip (a per-frame
  legend would flicker and change the frame size).

Videos are H.264 (``libx264``, yuv420p; yuv444p when a side is odd, which 4:2:0 cannot
hold) in MP4, at the input's frame rate and size, so ordinary players open them. Each file is
written under a temporary name and renamed when complete.

PyAV is an optional extra: ``pip install 'fcnseg[video]'``.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from fcnseg.inference.files import save_atomic
from fcnseg.inference.predict import SegmentError, class_names, palette_for
from fcnseg.inference.segment import check_options, segment
from fcnseg.inference.visualize import colorize, label_image, legend_entries, legend_panel, overlay

logger = logging.getLogger(__name__)

CODEC = "libx264"  # H.264: what browsers, phones and players open
QUALITY = {"crf": "18"}  # x264 constant quality; 18 is visually lossless for most material


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise SegmentError(
            "reading and writing videos needs PyAV: pip install 'fcnseg[video]' (or av)"
        ) from None
    return av


@dataclass
class VideoResult:
    """What :func:`segment_video` wrote: ``frames`` scored at ``fps`` (frames per second) and
    ``size`` (width, height), the ``written`` paths, and the ``classes`` present."""

    frames: int = 0
    fps: Fraction = Fraction(0)
    size: tuple[int, int] = (0, 0)
    written: list[Path] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


class _Writer:
    """An H.264 MP4 written to a temporary file and renamed to ``path`` by ``close()``."""

    def __init__(self, path: Path, fps: Fraction, width: int, height: int) -> None:
        av = _av()
        self.path = path
        handle, self.temporary = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.stem}.", suffix=".mp4"
        )
        os.close(handle)
        self.container = av.open(self.temporary, mode="w", format="mp4")
        self.stream = self.container.add_stream(CODEC, rate=fps, options=dict(QUALITY))
        self.stream.width, self.stream.height = width, height
        self.stream.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
        self.av = av
        self.count = 0

    def write(self, picture: np.ndarray) -> None:
        """One RGB frame, H x W x 3 uint8."""
        frame = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
        frame.pts = self.count
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def close(self, keep: bool) -> None:
        try:
            if keep:
                self.container.mux(self.stream.encode(None))  # flush the encoder
            self.container.close()
            if keep:
                os.replace(self.temporary, self.path)
        finally:
            Path(self.temporary).unlink(missing_ok=True)


def _batches(container: Any, stream: Any, size: int) -> Iterator[list[np.ndarray]]:
    batch: list[np.ndarray] = []
    for frame in container.decode(stream):
        batch.append(frame.to_ndarray(format="rgb24"))  # (H, W, 3) uint8
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def video_info(path: str | os.PathLike) -> tuple[int, Fraction, tuple[int, int]]:
    """(frames, frames per second, (width, height)) of a video's first video stream, counting
    frames by decoding when the container does not say."""
    av = _av()
    with _open(av, Path(path)) as container:
        stream = container.streams.video[0]
        fps = Fraction(stream.average_rate or stream.guessed_rate or 0)
        count = stream.frames or sum(1 for _ in container.decode(stream))
        return count, fps, (stream.codec_context.width, stream.codec_context.height)


def _open(av: Any, path: Path) -> Any:
    if not path.is_file():
        raise SegmentError(f"video file not found: {path}")
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise SegmentError(f"cannot read video {path}: {error}") from None
    if not container.streams.video:
        container.close()
        raise SegmentError(f"{path} has no video stream")
    return container


def segment_video(
    model: nn.Module,
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    frames: bool = False,
    alpha: float = 0.5,
    batch_size: int = 8,
    progress: Callable[..., Any] | None = None,
    **segment_options: Any,
) -> VideoResult:
    """Label every frame of the video at ``path``; see the module doc for what is written.

    ``frames``: label PNGs instead of the label video. ``alpha`` (0..1): the colour's share
    of the overlay. ``batch_size``: frames scored together. ``progress(total=n, unit="frame")``
    makes a progress bar (e.g. ``tqdm``) advanced per frame. ``segment_options``:
    :func:`fcnseg.segment`'s keywords (``tile``, ``flip``, ``scales``, ``crf``, ``dtype``, ...).
    """
    if not 0.0 <= alpha <= 1.0:
        raise SegmentError(f"alpha must lie in 0..1, got {alpha}")
    check_options(model, batch_size=batch_size, **segment_options)
    av = _av()
    path, out_dir = Path(path), Path(out_dir)
    names, palette = class_names(model), palette_for(model)
    container = _open(av, path)
    writers: list[_Writer] = []
    result = VideoResult()
    present: set[int] = set()
    bar = None
    ok = False
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # decode with FFmpeg's threads
        result.fps = Fraction(stream.average_rate or stream.guessed_rate or 25)
        result.size = (stream.codec_context.width, stream.codec_context.height)
        out_dir.mkdir(parents=True, exist_ok=True)
        frame_dir = out_dir / f"{path.stem}_labels"
        if frames:
            frame_dir.mkdir(exist_ok=True)
        else:
            writers.append(_Writer(out_dir / f"{path.stem}_labels.mp4", result.fps, *result.size))
        writers.append(_Writer(out_dir / f"{path.stem}_overlay.mp4", result.fps, *result.size))
        if progress is not None:
            bar = progress(total=stream.frames or None, unit="frame")
        for batch in _batches(container, stream, batch_size):
            labels = segment(model, batch, batch_size=batch_size, **segment_options)
            for picture, label in zip(batch, labels):
                present.update(int(v) for v in torch.unique(label))
                blended = overlay(
                    torch.from_numpy(picture).permute(2, 0, 1).float(), label, palette, alpha
                )
                if frames:
                    save_atomic(label_image(label, palette), frame_dir / f"{result.frames:06d}.png")
                else:
                    writers[0].write(colorize(label, palette))
                writers[-1].write(blended)
                result.frames += 1
            if bar is not None:
                bar.update(len(batch))
        ok = True
    except av.FFmpegError as error:
        raise SegmentError(f"cannot decode or encode {path}: {error}") from None
    finally:
        container.close()
        for writer in writers:
            writer.close(keep=ok)
        if bar is not None:
            bar.close()
    result.written = [w.path for w in writers] + ([frame_dir] if frames else [])
    entries = legend_entries([torch.tensor(sorted(present))], names, palette)
    result.classes = [name for _, name, _ in entries]
    legend_path = out_dir / f"{path.stem}_legend.png"
    save_atomic(Image.fromarray(legend_panel(entries, _legend_height(len(entries)))), legend_path)
    result.written.append(legend_path)
    logger.info("%s: %d frames at %s fps -> %s", path, result.frames, result.fps, out_dir)
    return result


def _legend_height(count: int) -> int:
    from fcnseg.inference.visualize import LEGEND_FONT_SIZE, LEGEND_PAD

    return LEGEND_PAD + max(1, count) * (LEGEND_FONT_SIZE + LEGEND_PAD)


__all__ = ["VideoResult", "segment_video", "video_info"]
