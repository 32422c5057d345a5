"""The training engine: `vitkit.train(config)` and its parts."""
from .config import TrainConfig, resolve_config
from .evaluate import evaluate
from . import pretrain  # noqa: F401  registers the pre-training tasks (task: mae, task: masked_patch)
from .trainer import NonFiniteLossError, TrainingInterrupted, TrainResult, train

__all__ = ["TrainConfig", "resolve_config", "evaluate", "train", "NonFiniteLossError", "TrainingInterrupted", "TrainResult"]
