"""Task names -> task classes and recipe schemas, imported only when asked for.

Convention: the module ``avfusion.tasks.<name>`` defines ``TASK_CLASS`` (an ``avfusion.engine.Task``
subclass, built from its recipe: ``TASK_CLASS(cfg)``) and ``RECIPE_CLASS`` (the recipe dataclass: ``train``, ``data``,
``model`` and task sections). The engine never sees this table; the commands use it.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING, Any

from avfusion.errors import ConfigError

if TYPE_CHECKING:
    from avfusion.engine import Task

TASKS: dict[str, str] = {
    "unimodal": "avfusion.tasks.unimodal",
    "pretrain": "avfusion.tasks.pretrain",
    "classify": "avfusion.tasks.classify",
    "localize": "avfusion.tasks.localize",
    "separate": "avfusion.tasks.separate",
    "segment": "avfusion.tasks.segment",
}


#: Stages before the downstream tasks: unimodal stream initialisation, then audio-visual pretraining.
PRETRAINING = ("unimodal", "pretrain")


def task_names() -> tuple[str, ...]:
    return tuple(TASKS)


def downstream_tasks() -> tuple[str, ...]:
    """The tasks that train and evaluate on top of an encoder (``avfusion train`` / ``avfusion evaluate``)."""
    return tuple(name for name in TASKS if name not in PRETRAINING)


def _module(name: str) -> ModuleType:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    try:
        return importlib.import_module(TASKS[name])
    except ModuleNotFoundError as exc:
        if exc.name == TASKS[name]:
            raise ConfigError(f"task {name!r} is not available in this installation ({TASKS[name]} is missing)") from None
        raise


def _attribute(name: str, attr: str):
    module = _module(name)
    value = getattr(module, attr, None)
    if value is None:
        raise ConfigError(f"{module.__name__} does not define {attr}; every task module must (see {__name__})")
    return value


def get_task(name: str) -> type:
    """The Task subclass of task ``name``."""
    return _attribute(name, "TASK_CLASS")


def get_recipe(name: str) -> type:
    """The recipe dataclass of task ``name``."""
    return _attribute(name, "RECIPE_CLASS")


def build_task(name: str, cfg: Any) -> "Task":
    """Task ``name`` built from its recipe ``cfg`` (an instance of ``get_recipe(name)``)."""
    return get_task(name)(cfg)
