"""Audio-visual classifier: mean-pooled image, audio and fusion tokens, one linear head each."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from avfusion.errors import ConfigError
from avfusion.models.base import AVModel
from avfusion.models.encoder import EarlyFusionEncoder


@dataclass
class ClassifierOutput:
    logits_image: torch.Tensor
    logits_audio: torch.Tensor
    logits_fusion: torch.Tensor
    logits: torch.Tensor  # mean of the three: the joint prediction


class Classifier(AVModel):
    """Heads `image_head`, `audio_head`, `fusion_head` over mean-pooled tokens (docs/model.md, task heads).

    `linear_probe=True` freezes the encoder (kept in eval mode, no gradients) and normalises each
    pooled feature with BatchNorm1d(D, affine=False, eps=1e-6) (`image_norm`, `audio_norm`,
    `fusion_norm`), as the official linear-probe recipe does.
    """

    task = "classify"

    def __init__(self, encoder: EarlyFusionEncoder, num_classes: int, linear_probe: bool = False,
                 class_names: Sequence[str] | None = None):
        super().__init__()
        if class_names is not None and len(class_names) != num_classes:
            raise ConfigError(f"{len(class_names)} class names for {num_classes} classes")
        self.encoder = encoder
        self.num_classes = num_classes
        self.linear_probe = linear_probe
        #: what each class is called (saved with the model, shown by inference); None: unnamed
        self.class_names = list(class_names) if class_names is not None else None
        self.options = dict(num_classes=num_classes, linear_probe=linear_probe)
        if self.class_names is not None:
            self.options["class_names"] = self.class_names
        D = encoder.embed_dim
        if linear_probe:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            self.image_norm = nn.BatchNorm1d(D, affine=False, eps=1e-6)
            self.audio_norm = nn.BatchNorm1d(D, affine=False, eps=1e-6)
            self.fusion_norm = nn.BatchNorm1d(D, affine=False, eps=1e-6)
        self.image_head = nn.Linear(D, num_classes)
        self.audio_head = nn.Linear(D, num_classes)
        self.fusion_head = nn.Linear(D, num_classes)
        for head in (self.image_head, self.audio_head, self.fusion_head):
            nn.init.xavier_uniform_(head.weight)
            nn.init.zeros_(head.bias)

    def train(self, mode: bool = True) -> "Classifier":
        super().train(mode)
        if self.linear_probe:
            self.encoder.train(False)
        return self

    def features(self, image: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Mean-pooled (B, D) image, audio and fusion features (before any probe normalisation)."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.linear_probe):
            tokens = self.encoder(image, audio)
        return tokens.image.mean(1), tokens.audio.mean(1), tokens.fusion.mean(1)

    def forward(self, image: torch.Tensor, audio: torch.Tensor) -> ClassifierOutput:
        f_image, f_audio, f_fusion = self.features(image, audio)
        if self.linear_probe:
            f_image, f_audio, f_fusion = self.image_norm(f_image), self.audio_norm(f_audio), self.fusion_norm(f_fusion)
        logits = (self.image_head(f_image), self.audio_head(f_audio), self.fusion_head(f_fusion))
        return ClassifierOutput(*logits, (logits[0] + logits[1] + logits[2]) / 3)
