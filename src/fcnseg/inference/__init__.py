"""Inference: a net applied to images a user has, and the opt-in fast paths.

- :mod:`fcnseg.inference.predict`: preprocessing from a checkpoint's metadata, label maps.
- :mod:`fcnseg.inference.fast`: autocast, matmul convolutions, ``optimize_for_inference``.
- :mod:`fcnseg.inference.visualize`: palette images, overlays and comparison grids.
"""
