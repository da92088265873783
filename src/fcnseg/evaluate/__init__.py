"""Scoring: the paper's four metrics (section 5) from one confusion matrix, and scoring a net.

- :mod:`fcnseg.evaluate.metrics`: ``ConfusionMatrix`` and the metric math.
- :mod:`fcnseg.evaluate.pair_counts`: the compiled (numba) confusion counter, optional.
- :mod:`fcnseg.evaluate.scoring`: a net over a dataset, into a confusion matrix.
"""
