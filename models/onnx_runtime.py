"""The one place that builds onnxruntime sessions, placed per replica (models.placement).

CUDA is used only when the host gave this replica a GPU *and* the installed onnxruntime has the CUDA
provider (the CPU wheel does not); thread pools are sized to the replica's CPU share so several model
replicas on one machine do not each grab every core. Execution is sequential: the networks served
here are chains of layers with nothing for inter-op parallelism to overlap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models import placement

if TYPE_CHECKING:  # onnxruntime is imported where a session is built, so that reading a models module stays cheap
    import onnxruntime as ort

ONNX_MAGIC_FIELD = 0x08  # ModelProto field 1 (ir_version, varint): the first byte of every ONNX file
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ProviderSpec = str | tuple[str, dict[str, Any]]


def check_onnx_file(path: Path) -> None:
    """Raise ValueError unless ``path`` starts like a ModelProto (a cheap check of a download, no runtime needed)."""
    with path.open("rb") as f:
        if f.read(1) != bytes([ONNX_MAGIC_FIELD]):
            raise ValueError(f"{path.name} is not an ONNX model (no ir_version field first)")


def choose_providers(place: placement.Placement, available: Sequence[str]) -> list[ProviderSpec]:
    """CUDA first (device 0 = the first GPU Ray made visible to this replica) when placed on a GPU, else CPU."""
    if place.has_gpu and CUDA in available:
        return [(CUDA, {"device_id": 0}), CPU]
    return [CPU]


def session_options(threads: int) -> ort.SessionOptions:
    """Sequential execution, ``threads`` intra-op threads, one inter-op thread, all graph optimisations, no arena."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # spinning threads burn the CPU share of neighbouring replicas between runs
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # the CPU arena keeps each session's largest buffers after a run: ~140 MB per madmom replica, same speed
    # without it (benchmarks/madmom_memory_results.md)
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 3
    return options


def create_session(model: str | os.PathLike[str] | bytes) -> ort.InferenceSession:
    """An InferenceSession for a model file (or serialized bytes) placed as ``placement.current()`` says."""
    import onnxruntime as ort

    place = placement.current()
    source = model if isinstance(model, bytes) else os.fspath(model)
    return ort.InferenceSession(
        source,
        sess_options=session_options(place.threads),
        providers=choose_providers(place, ort.get_available_providers()),
    )
