"""Training: recipes, the loop, resumable data order, distributed processes, logs and curves.

``train(recipe)`` runs a :class:`fcnseg.train.recipe.Recipe`; ``validate`` scores a net on a split
(by :func:`fcnseg.evaluate.scoring.score`, as ``fcnseg eval`` does).
"""

from fcnseg.train.build import InitReport, copy_matching, initialize, lr_factor
from fcnseg.train.checkpoints import TrainingDiverged
from fcnseg.train.distributed import launched_rank
from fcnseg.train.entry import TrainResult, resolve_recipe, train
from fcnseg.train.sampler import ResumableBatchSampler
from fcnseg.train.trainer import Trainer
from fcnseg.train.validation import validate

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
    "resolve_recipe",
    "train",
    "validate",
]
