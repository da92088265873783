"""Fast paths for inference and scoring, each exact or close to the reference path.

- :func:`optimize_for_inference` wraps a model for prediction: ``eval()`` (dropout is already
  the identity there, so nothing is skipped by hand), ``torch.inference_mode`` (no autograd
  records), channels-last tensors (oneDNN's preferred layout on CPU, tensor cores' on GPU),
  optional reduced precision via autocast, optional ``torch.compile`` with a logged fallback to
  eager, and on CUDA optional CUDA graphs per input shape.
- Convolutions with huge weights on small maps (fc6: 7 x 7 x 512 -> 4096, fc7: 4096 -> 4096,
  over pool5's cells) run as one matrix multiply over their unfolded windows
  (:class:`fcnseg.models.matmul_conv.MatmulConv2d`, swapped in by :func:`matmul_convolutions`;
  training uses it too): the same sums in another order, and on the CPU much faster than
  oneDNN's convolution, which reorders the weights on every call.
- Bilinear upsampling one class at a time (:class:`PerClassUpsample`, swapped in by
  :func:`per_class_upsampling`): the diagonal weight without its zero terms.
- :func:`fast_modules` swaps both in place; ``fcnseg eval --fast`` and ``fcnseg predict --fast``
  use it. The default path (no ``--fast``) runs the plain modules the builders make.
- Scoring: :class:`fcnseg.evaluate.metrics.ConfusionMatrix` counts with one compiled pass on the CPU
  where numba is installed (:mod:`fcnseg.evaluate.pair_counts`), else one int16 ``bincount``
  (:func:`fcnseg.evaluate.metrics.confusion_counts`).

The CUDA branches (autocast fp16, CUDA graphs) are written but untested: no GPU was at hand.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch
from torch import Tensor, nn

from fcnseg.models.matmul_conv import matmul_convolutions
from fcnseg.models.upsample import BilinearUpsample

log = logging.getLogger(__name__)


# ``--precision`` names: None runs float32; the others run the net under autocast.
PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


def autocast_to(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device`` (nothing for None or float32); float16 needs CUDA."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError("float16 inference needs a CUDA device; use bfloat16 on the CPU")
    if dtype not in (torch.bfloat16, torch.float16):
        raise ValueError(f"autocast dtype must be bfloat16 or float16, got {dtype}")
    return torch.autocast(device.type, dtype=dtype)


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether bfloat16 matmuls/convolutions run natively (CPU: AVX512-BF16 or AMX; CUDA: sm80+)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class PerClassUpsample(BilinearUpsample):
    """A :class:`BilinearUpsample` that runs a diagonal weight one class at a time.

    A bilinear weight (K, K, k, k) is diagonal across classes, so the dense transposed
    convolution spends (K - 1) / K of its multiply-adds on zeros. When the weight is diagonal
    and no gradient for it is wanted, ``forward`` runs ``conv_transpose2d(x, weight[i, i],
    groups=K)``: the same sums without the zero terms, equal to the dense path up to float
    rounding. The diagonal is checked on every call (nothing is cached, so a changed weight is
    always seen); a learned weight in training, off-diagonal terms, tracing, scripting,
    ``torch.compile`` and ONNX export take the dense path. Parameters and names are unchanged.
    """

    def _diagonal(self) -> Tensor | None:
        """The (K, 1, k, k) grouped weight, or None when the dense path must run."""
        weight = self.weight
        if (
            self.in_channels != self.out_channels
            or self.groups != 1
            or self.bias is not None
            or (weight.requires_grad and torch.is_grad_enabled())
            or weight.is_meta  # shape-only runs (FLOP counts) keep the dense op
            or torch.jit.is_scripting()
            or torch.jit.is_tracing()
            or torch.compiler.is_compiling()
            or torch.onnx.is_in_onnx_export()
        ):
            return None
        with torch.no_grad():
            eye = torch.eye(self.in_channels, dtype=torch.bool, device=weight.device)
            if weight[~eye].any():  # (K (K - 1), k, k) off-diagonal kernels: not all zero
                return None
            return weight[eye].unsqueeze(1)  # (K, 1, k, k)

    def forward(self, x: Tensor, output_size: list[int] | None = None) -> Tensor:
        diagonal = self._diagonal() if output_size is None else None
        if diagonal is None:
            return super().forward(x, output_size)
        return nn.functional.conv_transpose2d(  # (N, K, (h - 1) s + k - 2p, ...), per class
            x,
            diagonal,
            None,
            self.stride,
            self.padding,
            self.output_padding,
            self.in_channels,
            self.dilation,
        )


def per_class_upsampling(model: nn.Module, enable: bool = True) -> int:
    """Make ``model``'s :class:`BilinearUpsample` layers :class:`PerClassUpsample` (in place; or
    back with ``enable=False``); returns how many were changed. State dicts are untouched."""
    changed = 0
    for module in model.modules():
        if enable and type(module) is BilinearUpsample:
            module.__class__ = PerClassUpsample
            changed += 1
        elif not enable and type(module) is PerClassUpsample:
            module.__class__ = BilinearUpsample
            changed += 1
    return changed


def fast_modules(
    model: nn.Module,
    matmul_convs: bool | None = None,
    per_class: bool = True,
    channels_last: bool = False,
) -> nn.Module:
    """Swap the fast layers into ``model`` in place and return it (for ``--fast``).

    ``matmul_convs`` (default: on the CPU): :func:`matmul_convolutions`; ``per_class``:
    :func:`per_class_upsampling`; ``channels_last``: NHWC weights. Parameter names and values
    stay as they were, so scores equal the plain modules' up to float rounding.
    """
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if matmul_convs is None:
        matmul_convs = device.type == "cpu"
    matmul_convolutions(model, matmul_convs)  # after: it keeps their weights as they are
    per_class_upsampling(model, per_class)
    return model


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
    matmul_convs: bool | None = None,
    per_class: bool = True,
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
        matmul_convs: run convolutions with huge weights (fc6, fc7) as matrix multiplies
            (:func:`matmul_convolutions`; equal to float tolerance). Default: on the CPU,
            where it was measured to pay; not on GPUs, where it was not measured.
        per_class: run bilinear upsampling one class at a time (:func:`per_class_upsampling`).
    """
    device = next(model.parameters()).device
    if dtype == torch.float16 and device.type == "cpu":  # before the model is changed
        raise ValueError("dtype float16 is GPU-only here; use torch.bfloat16 or None on CPU")
    model.eval()
    fast_modules(model, matmul_convs, per_class, channels_last)
    if dtype == torch.bfloat16 and not bf16_supported(device):
        log.warning("bfloat16 is not native on %s; autocast will emulate it (slow)", device)
    return InferenceRunner(model, channels_last, dtype, compile, cuda_graphs)
