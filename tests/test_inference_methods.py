"""One record per inference task: the pipeline, the commands and the outputs all read `INFERENCE`."""
from __future__ import annotations

import pytest

from avfusion.errors import CheckpointError
from avfusion.inference import INFERENCE, INFERENCE_TASKS, Pipeline
from avfusion.inference.loading import check_supports
from avfusion.models import EncoderConfig, build_model

TINY = EncoderConfig(image_size=(32, 32), audio_size=(32, 32), embed_dim=32, depth=1, num_heads=2,
                     num_fusion_tokens=(2, 1, 1), fusion_num_heads=2)


def test_every_pipeline_method_has_a_record_and_a_command(capsys):
    import avfusion.commands.infer as infer
    from avfusion.cli import build_parser

    assert INFERENCE_TASKS == ("classify", "localize", "separate", "segment", "embed")
    parser = build_parser()
    for name, task in INFERENCE.items():
        assert task.name == name and callable(getattr(Pipeline, name))
        assert task.default_fit in ("crop", "squash") and task.help and task.example.startswith(f"avfusion {name} ")
        args = parser.parse_args([name, "v.mp4", "-c", "model"])
        assert args.func is getattr(infer, task.runner)
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
        shown = capsys.readouterr().out
        assert task.help[0].upper() + task.help[1:] + "." in shown and f"example:\n  {task.example}\n" in shown


def test_a_checkpoint_that_cannot_do_a_task_gets_its_training_hint():
    encoder = build_model("encoder", TINY)
    bare = build_model("encoder", EncoderConfig(**{**TINY.to_dict(), "fusion_layers": "none"}))
    for name, task in INFERENCE.items():
        if "any" in task.needs:
            assert task.train_hint is None
            check_supports(bare, name, "enc")
            continue
        if "fusion" in task.needs:
            check_supports(encoder, name, "enc")
        with pytest.raises(CheckpointError) as info:
            check_supports(bare, name, "enc")
        assert str(info.value) == f"enc: a checkpoint of kind 'encoder' cannot {name}; use {task.train_hint}"
