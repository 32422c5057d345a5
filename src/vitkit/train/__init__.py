"""The training engine: `vitkit.train(config)` and its parts."""
from .config import TrainConfig, resolve_config
from .evaluate import evaluate
from .trainer import NonFiniteLossError, TrainingInterrupted, TrainResult, train

__all__ = ["TrainConfig", "resolve_config", "evaluate", "train", "NonFiniteLossError", "TrainingInterrupted", "TrainResult"]
