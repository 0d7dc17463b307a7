"""Tasks: models + data + metrics behind the engine's ``Task`` interface, one module per task.

``pretrain``: masked audio-visual pretraining (AV-MAE) with the k-NN monitor. ``common``: the
``data:`` / ``model:`` recipe sections and datasets by name, shared by every task.
"""
from avfusion.tasks.common import DataConfig, ModelConfig, build_dataset, encoder_config_for
from avfusion.tasks.pretrain import PretrainModelConfig, PretrainRecipe, PretrainTask

__all__ = ["DataConfig", "ModelConfig", "PretrainModelConfig", "PretrainRecipe", "PretrainTask", "build_dataset",
           "encoder_config_for"]
