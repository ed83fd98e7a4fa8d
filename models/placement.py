"""Where this replica runs: how many CPU threads and which GPUs it may use.

Set once by the host (Ray replica or pool worker) from the registry entry's resources before the
analyzer is constructed, so network runtimes (TF, onnxruntime, torch) size their thread pools to the
replica's share of the machine instead of grabbing every core, and pick CUDA only when a GPU was given.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Placement:
    """CPU share (Ray ``num_cpus``, may be fractional) and the GPU ids Ray assigned (empty = CPU only)."""

    cpus: float = 1.0
    gpu_ids: tuple[str, ...] = ()

    @property
    def threads(self) -> int:
        """Thread-pool size for a runtime: the CPU share rounded up, at least 1, at most the machine's cores."""
        return max(1, min(math.ceil(self.cpus), os.cpu_count() or 1))

    @property
    def has_gpu(self) -> bool:
        """True when this replica was given at least one GPU."""
        return bool(self.gpu_ids)


_current = Placement()
_configured = False


def configure(cpus: float, gpu_ids: tuple[str, ...] = ()) -> Placement:
    """Record this process's placement (called by the host before it constructs the analyzer)."""
    global _current, _configured
    _current = Placement(cpus=cpus, gpu_ids=tuple(str(g) for g in gpu_ids))
    _configured = True
    return _current


def is_configured() -> bool:
    """True once a host recorded this process's placement (False in a plain script or a test process)."""
    return _configured


def current() -> Placement:
    """The placement recorded by ``configure`` (1 CPU, no GPU if never configured, e.g. in a plain script)."""
    return _current
