"""Trainer configuration: frozen dataclasses, presets, JSON overrides."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from nvf.errors import NVFError


@dataclass(frozen=True)
class ModelConfig:
    """Network shape (nvf/model.py)."""

    stacks: int = 1
    """Stacked-hourglass stacks; the last stack's features feed the point MLP."""
    width: int = 32
    """Channels inside the hourglass (and of the pixel-aligned features)."""
    levels: int = 2
    """Down-sampling levels of each hourglass."""
    stem_stride: int = 2
    """Stride of the stem (2 or 4); feature maps have (image size / stem_stride) pixels."""
    mlp: tuple[int, ...] = (128, 128, 64)
    """Hidden widths of the point MLP; every layer after the first also sees the input (skip)."""
    depth_frequencies: int = 4
    """Sin/cos frequencies encoding the root-relative depth (0: the raw value only)."""
    depth_scale: float = 1.0
    """Root-relative depth is divided by this (metres) before encoding."""
    pixel_coords: bool = False
    """Also feed the query's normalised crop coordinates (u, v), Fourier-encoded like the depth.
    Not in PIFu/NVF: it lets a small network memorise (the learning check); off in the presets."""


PRESETS = {
    "tiny": ModelConfig(),
    "full": ModelConfig(stacks=4, width=256, levels=4, stem_stride=4, mlp=(1024, 512, 256, 128),
                        depth_frequencies=6),
}
"""``tiny`` runs on a CPU in tests; ``full`` is the NVF/PIFu-sized network (GPU)."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; stored as RUN/config.json."""

    preset: str = "tiny"
    """Name of the model preset the ``model`` field started from (informational)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """Network shape."""
    epochs: int = 10
    """Passes over the training split."""
    batch_size: int = 8
    """Samples per step."""
    lr: float = 1e-3
    """Peak Adam learning rate; cosine-decayed to ``lr * lr_final_fraction`` over the run."""
    lr_final_fraction: float = 0.05
    """Learning rate at the last step as a fraction of ``lr``."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    points: int = 1024
    """Stored points drawn at random per sample and step (≤ the shards' points per sample)."""
    sdf_clamp: float = 0.1
    """SDF targets are clamped to ±this (metres); the SDF head is ``sdf_clamp * tanh``."""
    near_surface: float = 0.03
    """Points with |SDF| below this (metres) are near-surface: their votes are supervised."""
    sdf_weight: float = 1.0
    """Weight of the L1 SDF loss (measured in units of ``sdf_clamp``)."""
    vote_weight: float = 1.0
    """Weight of the smooth-L1 vote loss."""
    vote_beta: float = 0.05
    """Smooth-L1 transition point of the vote loss."""
    brightness: float = 0.2
    """Photometric augmentation: additive brightness jitter amplitude (image in [0, 1])."""
    contrast: float = 0.2
    """Photometric augmentation: multiplicative contrast jitter amplitude."""
    saturation: float = 0.2
    """Photometric augmentation: saturation jitter amplitude."""
    vote_sdf_threshold: float = 0.02
    """Inference: keep points with |predicted SDF| below this (metres)."""
    vote_top_fraction: float = 0.5
    """Inference: per joint, the top fraction of kept points by predicted h."""
    vote_min_h: float = 0.05
    """Inference: a kept point is a candidate voter of a joint when its predicted h exceeds this."""
    vote_min_points: int = 16
    """Inference: keep at least this many points (smallest |SDF|) if too few pass the threshold."""
    seed: int = 0
    """Global seed (weights, shuffling, point draws, augmentation)."""
    num_workers: int = 0
    """DataLoader worker processes."""
    device: str = "auto"
    """``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (CUDA when available)."""
    checkpoint_every: int = 1
    """Write RUN/checkpoint.pt every this many epochs (and always at the end)."""


def preset_config(preset: str) -> TrainConfig:
    if preset not in PRESETS:
        raise NVFError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    return TrainConfig(preset=preset, model=PRESETS[preset])


def apply_overrides(config: TrainConfig, overrides: dict, source: str = "overrides") -> TrainConfig:
    """``config`` with fields replaced from a (JSON-like) dict; ``model`` may be a partial dict."""
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(overrides) - known
    if unknown:
        raise NVFError(f"{source}: unknown config fields {sorted(unknown)}")
    changes = dict(overrides)
    if "model" in changes:
        model = changes["model"]
        if isinstance(model, dict):
            mknown = {f.name for f in dataclasses.fields(ModelConfig)}
            if set(model) - mknown:
                raise NVFError(f"{source}: unknown model fields {sorted(set(model) - mknown)}")
            if "mlp" in model:
                model = {**model, "mlp": tuple(model["mlp"])}
            changes["model"] = dataclasses.replace(config.model, **model)
    try:
        return dataclasses.replace(config, **changes)
    except TypeError as e:
        raise NVFError(f"{source}: {e}") from None


def load_config(path, base: TrainConfig | None = None) -> TrainConfig:
    """A config from a JSON file: its fields override ``base`` (default: the ``tiny`` preset)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NVFError(f"{path}: config file not found") from None
    except json.JSONDecodeError as e:
        raise NVFError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise NVFError(f"{path}: expected a JSON object")
    if base is None:
        base = preset_config(data.get("preset", "tiny"))
    return apply_overrides(base, data, str(path))


def config_to_json(config: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(config), indent=1, sort_keys=True) + "\n"
