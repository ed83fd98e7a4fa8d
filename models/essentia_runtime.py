"""Import Essentia quietly, once, the same way in every process (replica, pool worker, test)."""

from __future__ import annotations

import os
from types import ModuleType


def essentia_standard() -> ModuleType:
    """Return ``essentia.standard`` with TensorFlow and Essentia info logging silenced."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import essentia

    essentia.log.infoActive = False
    essentia.log.warningActive = False
    import essentia.standard as es

    return es
