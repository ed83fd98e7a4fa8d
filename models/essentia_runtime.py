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
    """Return ``essentia.standard`` with TF sized to this replica and TensorFlow/Essentia info logging silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "essentia.standard" not in sys.modules and placement.is_configured():  # leave scripts and tests alone
        configure_tensorflow(placement.current())
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as es

    return es
