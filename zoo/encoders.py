"""Encoders as classifiers (for ImageNet-subset pretraining) and loading their weights into a segmenter."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from backbones.base import EncoderClassifier
from backbones.vit import resample_pos_embeds
from zoo.registry import create_model

__all__ = ["create_classifier", "load_encoder_weights", "load_encoder_file"]


def create_classifier(name: str, num_classes: int = 1000, drop_rate: float = 0.0,
                      **overrides: Any) -> EncoderClassifier:
    """The encoder of registered segmenter `name` (built with `overrides`) as a classifier: global pool + head."""
    model = create_model(name, **overrides)
    encoder = getattr(model, "encoder", None)
    if encoder is None or not hasattr(encoder, "forward_features"):
        raise ValueError(f"model {name!r} has no `encoder` with `forward_features`, so it has no classifier form")
    return EncoderClassifier(encoder, num_classes, drop_rate)


def load_encoder_weights(seg_model: nn.Module, classifier_state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy a classifier's `encoder.*` weights into `seg_model.encoder` (head weights are ignored); position
    embeddings trained at another image size are resampled. Returns the loaded encoder keys.

    Raises ValueError naming the keys when shapes differ or keys are missing/unexpected (e.g. other in_channels).
    """
    encoder = getattr(seg_model, "encoder", None)
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"seg_model ({type(seg_model).__name__}) has no `encoder` module to load weights into")
    state = {k[len("encoder."):]: v for k, v in classifier_state_dict.items() if k.startswith("encoder.")}
    if not state:
        sample = list(classifier_state_dict)[:3]
        raise ValueError(f"classifier_state_dict has no 'encoder.*' keys (first keys: {sample}); pass the "
                         "state_dict of an EncoderClassifier")
    state = resample_pos_embeds(encoder, state)
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: classifier {tuple(state[k].shape)} vs encoder {tuple(own[k].shape)}"
                  for k in sorted(set(state) & set(own)) if state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError("classifier weights do not fit seg_model.encoder: "
                         f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                         f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                         f"shape mismatches {mismatched[:5]}")
    encoder.load_state_dict(state)
    return sorted(state)


def load_encoder_file(seg_model: nn.Module, path: str | Path) -> list[str]:
    """`load_encoder_weights` from a file: a `ClassificationModule` checkpoint (`weights_only` torch load) or a
    classifier state dict in safetensors/torch format. Returns the loaded encoder keys."""
    from zoo.weights import load_state_dict_file

    if not Path(path).is_file():
        raise FileNotFoundError(f"encoder_weights: file {str(path)!r} does not exist (expected a ClassificationModule "
                                "checkpoint or a classifier state dict in safetensors or torch format)")
    try:
        return load_encoder_weights(seg_model, load_state_dict_file(path))
    except ValueError as err:
        raise ValueError(f"encoder_weights={str(path)!r}: {err}") from err
