"""Inference: a net applied to images a user has, and the opt-in fast paths.

- :mod:`fcnseg.inference.predict`: preprocessing from a checkpoint's metadata, class scores
  (the one net pass of every prediction), label maps.
- :mod:`fcnseg.inference.fast`: autocast, matmul convolutions, ``optimize_for_inference``.
- :mod:`fcnseg.inference.visualize`: palette images, overlays, comparison grids and legends.
- :mod:`fcnseg.inference.segment`: ``fcnseg.segment``, labels of a path, PIL image, array or
  tensor, with :mod:`~fcnseg.inference.tiling` (sliding windows, bounded memory) and
  :mod:`~fcnseg.inference.tta` (flips and scales) and :mod:`~fcnseg.inference.crf` (a
  mean-field CRF after the net).
- :mod:`fcnseg.inference.files`: folders through a DataLoader, equal-size batches.
- :mod:`fcnseg.inference.video`: videos through PyAV (optional extra ``video``).
"""
