"""Training and evaluation. Knows nothing of MLflow: it reports through ``RunLogger``."""

from bioclf.engine.evaluate import EvalOutput, evaluate
from bioclf.engine.logger import NullLogger, RecordingLogger, RunLogger
from bioclf.engine.train import TrainResult, train

__all__ = ["EvalOutput", "NullLogger", "RecordingLogger", "RunLogger", "TrainResult", "evaluate", "train"]
