"""Import Essentia quietly, once, the same way in every process (replica, pool worker, test).

Every Essentia model (DSP ones included) loads essentia-tensorflow, whose ``import essentia.standard``
starts TensorFlow; ``essentia_standard()`` therefore sizes TF's thread pools to this replica's placement
(models.placement) before the first import.
"""

from __future__ import annotations

import logging
import os
import sys
from types import ModuleType

from models import placement

log = logging.getLogger("mirstream.models")


def configure_tensorflow(where: placement.Placement) -> bool:
    """Size TF's thread pools to this replica and hide GPUs it was not given; False if it is too late.

    essentia-tensorflow's libtensorflow 2.5 reads TF_NUM_INTRAOP_THREADS / TF_NUM_INTEROP_THREADS when it
    creates its first session, and ``import essentia.standard`` already creates sessions (it instantiates
    every algorithm), so this must run before that import; the algorithm itself has no thread parameter.
    The libtensorflow is a CUDA 11 build and TF by default maps nearly all memory of every visible GPU when
    its first session starts, so a replica without a GPU hides them and one with a GPU allocates on demand
    (fractional GPUs share).
    """
    if "essentia.standard" in sys.modules:
        log.warning("essentia.standard was imported before TF was configured: its thread pools keep their size")
        return False
    threads = str(where.threads)
    os.environ["TF_NUM_INTRAOP_THREADS"] = threads
    os.environ["TF_NUM_INTEROP_THREADS"] = threads
    if where.has_gpu:
        os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    return True


def essentia_standard() -> ModuleType:
    """Return ``essentia.standard`` with TF sized to this replica, TensorFlow/Essentia info logging silenced, and
    its algorithm classes created on first use.

    ``import essentia.standard`` normally builds a Python class for each of Essentia's ~300 algorithms, which
    instantiates every one of them once (TensorFlow's included): about 105 MB more per process than the handful
    an analyzer uses (measured with benchmarks/memory.py). So the import builds only ``FrameCutter`` (which
    essentia's own Python helpers need at import) and the rest are built when first looked up.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "essentia.standard" not in sys.modules and placement.is_configured():  # leave scripts and tests alone
        configure_tensorflow(placement.current())
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    if "essentia.standard" in sys.modules:
        return sys.modules["essentia.standard"]
    from essentia import _essentia

    every = _essentia.keys
    _essentia.keys = lambda: ["FrameCutter"]  # what essentia.standard builds while it is imported
    try:
        import essentia.standard as es
    finally:
        _essentia.keys = every
    names = frozenset(every())

    def build(name: str) -> type:
        """The class of algorithm ``name``, built (once) when something first asks the module for it."""
        if name not in names:
            raise AttributeError(f"module 'essentia.standard' has no attribute {name!r}")
        return es._create_essentia_class(name, es.__name__)  # it also sets the module attribute

    es.__getattr__ = build  # PEP 562: consulted only for names not yet on the module
    return es
