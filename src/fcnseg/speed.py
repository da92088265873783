"""Fast paths for inference and scoring, each exact or close to the reference path.

- :func:`optimize_for_inference` wraps a model for prediction: ``eval()`` (dropout is already
  the identity there, so nothing is skipped by hand), ``torch.inference_mode`` (no autograd
  records), channels-last tensors (oneDNN's preferred layout on CPU, tensor cores' on GPU),
  optional reduced precision via autocast, optional ``torch.compile`` with a logged fallback to
  eager, and on CUDA optional CUDA graphs per input shape.
- Large-kernel convolutions on small maps (fc6: 7 x 7 x 512 -> 4096 over pool5's cells) run
  as one matrix multiply over their unfolded windows (:class:`MatmulConv2d`, swapped in by
  :func:`matmul_convolutions`): the same sums in another order, and on the CPU much faster
  than the direct convolution oneDNN picks for them.
- The per-class bilinear upsampling lives in :class:`fcnseg.models.upsample.BilinearUpsample`
  and is on by default; :func:`dense_upsampling` switches it off to measure or compare.
- Scoring: :class:`fcnseg.metrics.ConfusionMatrix` counts with one int16 ``bincount`` pass
  (:func:`fcnseg.metrics.confusion_counts`).

The CUDA branches (autocast fp16, CUDA graphs) are written but untested: no GPU was at hand.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator

import torch
from torch import Tensor, nn

from fcnseg.models.upsample import BilinearUpsample
from fcnseg.predict import autocast_to

log = logging.getLogger(__name__)


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 matmuls/convolutions run natively (CPU: AVX512-BF16 or AMX; CUDA: sm80+)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@contextlib.contextmanager
def dense_upsampling(model: nn.Module) -> Iterator[None]:
    """Run every :class:`BilinearUpsample` of ``model`` as a dense K x K deconvolution."""
    layers = [m for m in model.modules() if isinstance(m, BilinearUpsample)]
    saved = [m.per_class for m in layers]
    for m in layers:
        m.per_class = False
    try:
        yield
    finally:
        for m, value in zip(layers, saved):
            m.per_class = value


# Which convolutions :func:`matmul_convolutions` swaps: windows of at least this many cells
# over at least this many channels (VGG16's and AlexNet's fc6; not a 3 x 3 or an RGB conv1).
MATMUL_MIN_KERNEL_AREA = 25
MATMUL_MIN_IN_CHANNELS = 64
# Unfolded windows of at most this many bytes at a time (the batch is split beyond it).
MATMUL_CHUNK_BYTES = 256 * 2**20


class MatmulConv2d(nn.Conv2d):
    """A ``Conv2d`` computed as im2col + one matrix multiply; parameters and names unchanged.

    ``F.unfold`` lays each output cell's window out as a row of ``C kh kw`` values; the rows
    times the flattened kernels ``(C kh kw, O)`` are the outputs, returned channels-last for
    a channels-last input. Grouped or non-zero-padded convolutions fall back to ``Conv2d``.
    """

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if self.groups != 1 or self.padding_mode != "zeros" or isinstance(self.padding, str):
            return super()._conv_forward(input, weight, bias)
        n, _, h, w = input.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_size, self.stride, self.padding, self.dilation
        )  # fmt: skip
        out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if out_h < 1 or out_w < 1:  # let Conv2d raise its error
            return super()._conv_forward(input, weight, bias)
        kernels = weight.reshape(self.out_channels, -1).t()  # (C kh kw, O)
        window_bytes = kernels.shape[0] * out_h * out_w * input.element_size()
        step = max(1, MATMUL_CHUNK_BYTES // max(1, window_bytes))
        outputs = []
        for start in range(0, n, step):
            windows = nn.functional.unfold(
                input[start : start + step], (kh, kw), (dh, dw), (ph, pw), (sh, sw)
            )  # (n', C kh kw, L)
            rows = windows.transpose(1, 2)  # (n', L, C kh kw)
            out = rows @ kernels if bias is None else torch.matmul(rows, kernels).add_(bias)
            outputs.append(out)  # (n', L, O)
        out = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
        out = out.view(n, out_h, out_w, self.out_channels).permute(0, 3, 1, 2)  # NHWC strides
        if input.is_contiguous(memory_format=torch.channels_last):
            return out
        return out.contiguous()


def matmul_convolutions(model: nn.Module, enable: bool = True) -> int:
    """Make ``model``'s large-kernel ``Conv2d`` layers :class:`MatmulConv2d` (in place; or back
    to ``Conv2d`` with ``enable=False``); returns how many were changed.

    Large: at least ``MATMUL_MIN_KERNEL_AREA`` kernel cells over ``MATMUL_MIN_IN_CHANNELS``
    input channels, ungrouped. Weights, names and ``state_dict`` are untouched.
    """
    changed = 0
    for module in model.modules():
        if enable and type(module) is nn.Conv2d:
            kh, kw = module.kernel_size
            if (
                kh * kw >= MATMUL_MIN_KERNEL_AREA
                and module.in_channels >= MATMUL_MIN_IN_CHANNELS
                and module.groups == 1
            ):
                module.__class__ = MatmulConv2d
                changed += 1
        elif not enable and type(module) is MatmulConv2d:
            module.__class__ = nn.Conv2d
            changed += 1
    return changed


class InferenceRunner:
    """``runner(x) -> scores``: a model prepared by :func:`optimize_for_inference`.

    Input ``x``: (N, C, H, W) float on the model's device. Output: (N, K, H, W) float32,
    contiguous. ``compiled`` says whether ``torch.compile`` is in use (it turns False, with a
    warning, if compiling or the first compiled call fails).
    """

    def __init__(
        self,
        model: nn.Module,
        channels_last: bool,
        dtype: torch.dtype | None,
        compile: bool,
        cuda_graphs: bool,
    ) -> None:
        self.model = model
        self.channels_last = channels_last
        self.dtype = dtype
        self.device = next(model.parameters()).device
        self.compiled = False
        self._forward: Callable[[Tensor], Tensor] = model
        if compile:
            try:
                self._forward = torch.compile(model)
                self.compiled = True
            except Exception as error:  # noqa: BLE001 - any failure means: run eagerly
                log.warning("torch.compile unavailable (%s); running eagerly", error)
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda"
        self._graphs: dict[tuple[int, ...], tuple[torch.cuda.CUDAGraph, Tensor, Tensor]] = {}

    def _autocast(self) -> contextlib.AbstractContextManager:
        return autocast_to(self.device, self.dtype)

    def _run(self, x: Tensor) -> Tensor:
        with self._autocast():
            if not self.compiled:
                return self._forward(x)
            try:
                return self._forward(x)
            except Exception as error:  # noqa: BLE001 - compile errors surface on first call
                log.warning("torch.compile failed (%s: %s); running eagerly", type(error), error)
                self._forward, self.compiled = self.model, False
                return self.model(x)

    def _graphed(self, x: Tensor) -> Tensor:  # CUDA only; untested here (no GPU)
        key = tuple(x.shape)
        if key not in self._graphs:
            static_x = x.clone()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):  # warm up allocator and kernels outside the capture
                    self._run(static_x)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_y = self._run(static_x)
            self._graphs[key] = (graph, static_x, static_y)
        graph, static_x, static_y = self._graphs[key]
        static_x.copy_(x)
        graph.replay()
        return static_y.clone()

    def __call__(self, x: Tensor) -> Tensor:
        with torch.inference_mode():
            x = x.to(self.device, non_blocking=True)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = self._graphed(x) if self.cuda_graphs else self._run(x)
            return y.float().contiguous()


def optimize_for_inference(
    model: nn.Module,
    channels_last: bool = True,
    dtype: torch.dtype | None = None,
    compile: bool = False,
    cuda_graphs: bool = False,
    matmul_convs: bool = True,
) -> InferenceRunner:
    """Put ``model`` in eval mode (in place) and return a fast ``runner(x) -> scores``.

    Args:
        channels_last: convert weights and inputs to NHWC (exact; oneDNN's layout on CPU).
        dtype: ``torch.bfloat16`` (CPU or GPU) or ``torch.float16`` (GPU) autocast; ``None``
            keeps float32. bfloat16 scores differ from float32 by ~1e-2 relative; on a CPU
            without native bf16 (no AVX512-BF16/AMX) it is emulated and usually slower: a
            warning says so.
        compile: ``torch.compile`` the model; on failure, log a warning and run eagerly.
        cuda_graphs: on CUDA, capture one graph per input shape (fixed sizes only).
        matmul_convs: run large-kernel convolutions (fc6) as matrix multiplies
            (:func:`matmul_convolutions`; equal to float tolerance).
    """
    model.eval()
    matmul_convolutions(model, matmul_convs)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    device = next(model.parameters()).device
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("dtype float16 is GPU-only here; use torch.bfloat16 or None on CPU")
    if dtype == torch.bfloat16 and not bf16_supported(device):
        log.warning("bfloat16 is not native on %s; autocast will emulate it (slow)", device)
    return InferenceRunner(model, channels_last, dtype, compile, cuda_graphs)
