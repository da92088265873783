"""Training: the loop, resumable data order, distributed processes, logs and curves.

``train(recipe)`` runs a :class:`fcnseg.recipe.Recipe`; ``validate`` scores a net on a split.
"""

from fcnseg.engine.build import InitReport, copy_matching, initialize, lr_factor
from fcnseg.engine.data import ResumableBatchSampler
from fcnseg.engine.distributed import launched_rank
from fcnseg.engine.loop import Trainer, TrainingDiverged, TrainResult, train, validate

__all__ = [
    "InitReport",
    "ResumableBatchSampler",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "copy_matching",
    "initialize",
    "launched_rank",
    "lr_factor",
    "train",
    "validate",
]
