"""The official DeepAVFusion checkpoint layout: the ONLY module that knows it.

Official checkpoints are pickled dicts {"state_dict": ..., "optimizer": ..., "epoch": ...}. Their
parameter names equal ours except for the MAE decoders (`image_decoder_embed` here is
`image_decoder.embed` in our modules). Everything the shapes reveal is inferred; what they cannot
reveal (input sizes, head counts, the split of the fusion tokens) is an argument with the official
default.
"""
from __future__ import annotations

import logging
import os
import re
from typing import Any, Mapping

import torch

from avfusion.errors import CheckpointError
from avfusion.models.encoder import EncoderConfig, format_fusion_layers
from avfusion.models.presets import DEFAULT_NUM_HEADS

log = logging.getLogger(__name__)

_DECODER_OFFICIAL = re.compile(r"^(image|audio)_decoder_(embed|mask_token|pos_embed|blocks|norm|pred)\b")
_DECODER_OURS = re.compile(r"^(image|audio)_decoder\.(embed|mask_token|pos_embed|blocks|norm|pred)\b")
_SEGMENTATION_KEYS = ("normv.", "proja.", "norma.", "top.", "lat.", "up.", "predictor.")


def read_checkpoint(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of an official checkpoint (a path or an already loaded dict).

    Pickles are read with `weights_only=True`: no code in a checkpoint is ever executed.
    """
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise CheckpointError(f"{path}: no such checkpoint file")
        try:
            source = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # re-raised with the file named
            raise CheckpointError(f"{path}: cannot be read as a weights-only PyTorch checkpoint ({exc})") from exc
    if not isinstance(source, Mapping):
        raise CheckpointError(f"expected a checkpoint dict, got {type(source).__name__}")
    state = source.get("state_dict", source.get("model", source))
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("checkpoint holds no state dict of tensors (looked for 'state_dict', 'model')")
    if state and all(k.startswith("module.") for k in state):  # saved from a DDP wrapper
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def to_ours(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official parameter names -> ours."""
    return {_DECODER_OFFICIAL.sub(r"\1_decoder.\2", k): v for k, v in state.items()}


def to_official(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our parameter names -> official (exact inverse of `to_ours`)."""
    return {_DECODER_OURS.sub(r"\1_decoder_\2", k): v for k, v in state.items()}


def detect_task(state: Mapping[str, torch.Tensor]) -> str:
    """Which model a state dict (our names) belongs to: pretrain, classify, localize, separate, segment, encoder."""
    keys = list(state)
    if any(k.startswith("image_decoder.") for k in keys):
        return "pretrain"
    if "image_head.weight" in state:
        return "classify"
    if any(k.startswith(("avss_decoder.", "temporal_decoder.")) for k in keys):  # official / avfusion's head
        return "separate"
    if any(k.startswith(("image_proj.", "query_proj.")) for k in keys):  # avfusion's contrastive localiser
        return "localize"
    if any(k.startswith(_SEGMENTATION_KEYS) for k in keys):
        return "segment"
    if any(k.startswith("encoder.") for k in keys):
        return "encoder"
    raise CheckpointError("checkpoint has no `encoder.*` keys: not a DeepAVFusion checkpoint "
                          f"(first keys: {keys[:5]})")


def _count(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in state if (m := pattern.match(k))})


def _heads(width: int, given: int | None, what: str) -> int:
    if given is not None:
        return given
    if width not in DEFAULT_NUM_HEADS:
        raise CheckpointError(f"cannot infer the {what} head count for width {width}; pass it explicitly")
    return DEFAULT_NUM_HEADS[width]


def infer_encoder_config(state: Mapping[str, torch.Tensor], image_size=(224, 224), audio_size=(128, 192),
                         num_heads: int | None = None, fusion_num_heads: int | None = None,
                         num_fusion_tokens=(16, 8, 8)) -> EncoderConfig:
    """The encoder configuration of an `encoder.*` state dict (our names), from tensor shapes."""
    try:
        proj = state["encoder.image.patch_embed.proj.weight"]
        D, patch = proj.shape[0], proj.shape[-1]
        depth = _count(state, "encoder.image.blocks.")
        mlp_ratio = state["encoder.image.blocks.0.mlp.fc1.weight"].shape[0] / D
        total_tokens = state["encoder.fusion_tokens"].shape[1]
    except KeyError as exc:
        raise CheckpointError(f"checkpoint lacks the encoder key {exc.args[0]!r}") from None
    layers = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.fusion_blocks\.(\d+)\.", k))})
    fusion_type, attn_ratio, fusion_mlp_ratio = "none", 0.25, 1.0
    if layers:
        block = f"encoder.fusion_blocks.{layers[0]}."
        if block + "attn.attn_v.q.weight" in state:
            fusion_type = "factorized"
        elif state[block + "attn.kv.weight"].shape[1] == 2 * D:
            fusion_type = "dense"
        else:
            fusion_type = "token"
        attn_ratio = state[block + "attn.q.weight"].shape[0] / D
        fusion_mlp_ratio = state[block + "mlp.fc1.weight"].shape[0] / D
    num_fusion_tokens = tuple(num_fusion_tokens)
    if sum(num_fusion_tokens) != total_tokens:
        raise CheckpointError(
            f"the checkpoint has {total_tokens} fusion tokens but num_fusion_tokens={num_fusion_tokens} "
            f"sums to {sum(num_fusion_tokens)}; pass the (fusion, image-aggregation, audio-aggregation) split")
    heads = _heads(D, num_heads, "stream")
    config = EncoderConfig(
        image_size=tuple(image_size), audio_size=tuple(audio_size), patch_size=patch, embed_dim=D,
        depth=depth, num_heads=heads, mlp_ratio=mlp_ratio, fusion_type=fusion_type,
        fusion_layers=format_fusion_layers(layers, depth) if layers else "none",
        num_fusion_tokens=num_fusion_tokens, fusion_num_heads=fusion_num_heads or heads,
        fusion_attn_ratio=attn_ratio, fusion_mlp_ratio=fusion_mlp_ratio)
    for stream, size in (("image", image_size), ("audio", audio_size)):
        n = state[f"encoder.{stream}.pos_embed"].shape[1]
        grid = (size[0] // patch) * (size[1] // patch)
        if n != grid:
            raise CheckpointError(f"encoder.{stream}.pos_embed has {n} positions but {stream}_size={tuple(size)} "
                                  f"with patch {patch} gives {grid}; pass the {stream}_size it was trained with")
    return config


def infer_task_options(task: str, state: Mapping[str, torch.Tensor], decoder_num_heads: int | None = None
                       ) -> dict[str, Any]:
    """Constructor options of the task model that the shapes reveal."""
    if task == "pretrain":
        embed = state["image_decoder.embed.weight"]
        return dict(decoder_embed_dim=embed.shape[0], decoder_depth=_count(state, "image_decoder.blocks."),
                    decoder_num_heads=decoder_num_heads or 16,
                    decoder_mlp_ratio=state["image_decoder.blocks.0.mlp.fc1.weight"].shape[0] / embed.shape[0])
    if task == "classify":
        return dict(num_classes=state["image_head.weight"].shape[0],
                    linear_probe="image_norm.running_mean" in state)
    if task == "segment":
        return dict(num_classes=state["predictor.2.weight"].shape[0])
    return {}


def load_official(source, image_size=(224, 224), audio_size=(128, 192), num_heads: int | None = None,
                  fusion_num_heads: int | None = None, decoder_num_heads: int | None = None,
                  num_fusion_tokens=(16, 8, 8), **task_options) -> torch.nn.Module:
    """Build the model an official checkpoint holds and load it strictly.

    Returns the pretraining model (decoder keys present), the classifier, separator or segmenter
    (their head keys present), or else the bare encoder. `task_options` go to the task model
    (e.g. `weighted_loss=`, `binary_mask=` for the separator; `image_mask_ratio=` for pretraining).
    """
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    return official_model(to_ours(read_checkpoint(source)), name, image_size=image_size, audio_size=audio_size,
                          num_heads=num_heads, fusion_num_heads=fusion_num_heads, decoder_num_heads=decoder_num_heads,
                          num_fusion_tokens=num_fusion_tokens, **task_options)


def official_model(state: Mapping[str, torch.Tensor], name: str | None, image_size=(224, 224),
                   audio_size=(128, 192), num_heads: int | None = None, fusion_num_heads: int | None = None,
                   decoder_num_heads: int | None = None, num_fusion_tokens=(16, 8, 8), **task_options
                   ) -> torch.nn.Module:
    """The model an official state dict (already in our names) holds, loaded strictly, in eval mode;
    the arguments are `load_official`'s. Errors begin with ``name`` (the file) when given."""
    from avfusion.models import build_model  # the model registry

    try:
        task = detect_task(state)
        config = infer_encoder_config(state, image_size, audio_size, num_heads, fusion_num_heads, num_fusion_tokens)
    except CheckpointError as exc:
        if name is None:
            raise
        raise CheckpointError(f"{name}: {exc}") from exc
    options = {**infer_task_options(task, state, decoder_num_heads), **task_options}
    model = build_model(task, config, **options)
    if task == "encoder":
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    load_state_strict(model, state, name or "checkpoint")
    log.info("loaded official %s checkpoint (%s fusion at layers %s)", task, config.fusion_type, config.fusion_layers)
    return model.eval()


def load_state_strict(model: torch.nn.Module, state: Mapping[str, torch.Tensor], name) -> None:
    """load_state_dict(strict=True) with an error that lists every missing, unexpected or misshapen key."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    misshapen = sorted(f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                       for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or misshapen:
        parts = [f"{label} ({len(keys)}): {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}"
                 for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", misshapen))
                 if keys]
        raise CheckpointError(f"{name}: checkpoint does not fit the model; " + "; ".join(parts))
    model.load_state_dict(state, strict=True)


def export_official(model: torch.nn.Module, path: str | os.PathLike | None = None, **extra) -> dict:
    """Our model -> an official-layout checkpoint dict {"state_dict": ...}; written atomically when `path`.

    Only the official architectures have an official layout: a model whose options the official code
    lacks (``AVModel.official_layout_conflict``, e.g. a segmenter with a narrower decoder) is refused.
    """
    from avfusion.models.base import AVModel

    conflict = model.official_layout_conflict() if isinstance(model, AVModel) else None
    if conflict:
        raise CheckpointError(f"the official layout cannot hold this {model.task} model: {conflict}; keep it in "
                              "ours (avfusion.save_pretrained)")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    if getattr(model, "task", "encoder") == "encoder":
        state = {f"encoder.{k}": v for k, v in state.items()}
    checkpoint = {"state_dict": to_official(state), **extra}
    if path is not None:
        from avfusion.checkpoints.io import atomic_torch_save
        atomic_torch_save(checkpoint, path)
    return checkpoint


def load_stream_init(stream: torch.nn.Module, source) -> None:
    """Initialise a modality stream from MAE-ImageNet or AudioMAE weights ({"model": ...}).

    The class token and the decoder are dropped; `pos_embed` is recomputed for the stream's grid.
    """
    state = read_checkpoint(source)
    name = source if isinstance(source, (str, os.PathLike)) else "stream checkpoint"
    ignored = ("cls_token", "pos_embed", "mask_token", "decoder_", "fc_norm", "head.")
    kept = {k: v for k, v in state.items() if not k.startswith(ignored)}
    kept["pos_embed"] = stream.pos_embed.detach().clone()  # recomputed for the target grid
    load_state_strict(stream, kept, name)
