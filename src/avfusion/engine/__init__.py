"""The one training engine: a task interface, the loop, distributed setup, checkpoints, configs."""
from avfusion.engine.config import apply_overrides, build, load_config, load_recipe, save_config, to_dict
from avfusion.engine.loop import TrainResult, run_training
from avfusion.engine.task import Evaluation, Metrics, ParamHints, Task, unwrap
from avfusion.engine.train_config import TrainConfig

__all__ = [
    "Evaluation", "Metrics", "ParamHints", "Task", "TrainConfig", "TrainResult", "apply_overrides", "build", "load_config",
    "load_recipe", "run_training", "save_config", "to_dict", "unwrap",
]
