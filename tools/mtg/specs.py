"""What tools/mtg/convert.py vendors into models/weights/mtg: every MTG source file, its SHA-256, and the labels.

Sources are the files listed in /work/shared/weights/mtg/PROVENANCE.md (two public MTG repositories); the
digests below are those of the originals and are checked before anything is converted or copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ESSENTIA_JS = ("MTG/essentia.js", "41add89e022eb4ae0b3f189d9a4baacf26daa5c6", "examples/demos/mood-classifiers/models")
ESSENTIA_MODELS = ("MTG/essentia-models", "c298db07de13e79d9b1ab892b074ccad4cc10c20", "")

# Original file (relative to the source folder) → SHA-256: SOURCES.sha256 next to this file, in sha256sum's
# format, so `cd <source> && sha256sum -c <repo>/tools/mtg/SOURCES.sha256` checks a copy of the originals.
SOURCE_SHA256 = {
    path: digest
    for digest, path in (
        line.split("  ", 1) for line in (Path(__file__).parent / "SOURCES.sha256").read_text().splitlines()
    )
}

# Label order = output order. Sources (see models/weights/mtg/README.md): MTG/essentia.js mood-classifiers
# demo (the TF.js worker's and src/modelState.js's ``tagOrder``: which output index is the positive class),
# MTG/essentia-replicate-demos transfer-learning-music/models.py (labels in output order), and the model-zoo
# metadata spelling (non_/not_ prefixes) of https://essentia.upf.edu/models.
BINARY = {
    "mood_happy": ("happy", "non_happy"),
    "mood_sad": ("non_sad", "sad"),
    "mood_relaxed": ("non_relaxed", "relaxed"),
    "mood_aggressive": ("aggressive", "not_aggressive"),
    "danceability": ("danceable", "not_danceable"),
}
EMOMUSIC = ("valence", "arousal")  # essentia.js demo tagOrder; MTG's arousal/valence JSONs list the same order
DORTMUND = ("alternative", "blues", "electronic", "folkcountry", "funksoulrnb", "jazz", "pop", "raphiphop", "rock")


@dataclass(frozen=True)
class TfjsHead:
    """A TF.js head converted to ONNX: output stem, source folder, labels, kind."""

    stem: str
    folder: str
    classes: tuple[str, ...]
    kind: str  # "classifier" | "regression"
    description: str


TFJS_HEADS = tuple(
    TfjsHead(
        f"{task}-msd-musicnn-1",
        f"essentia.js/{task}-msd-musicnn-1/tfjs",
        labels,
        "classifier",
        f"{task.replace('_', ' ')} ({labels[0]} / {labels[1]}), softmax over 2 classes on 200-d MSD-MusiCNN embeddings",
    )
    for task, labels in BINARY.items()
) + (
    TfjsHead(
        "emomusic-msd-musicnn-1",
        "essentia.js/emomusic-msd-musicnn-1/tfjs",
        EMOMUSIC,
        "regression",
        "arousal and valence regression (emoMusic annotations, scale 1-9) on 200-d MSD-MusiCNN embeddings",
    ),
)

EFFNET_HEADS = {  # MTG's own ONNX heads (tf2onnx), input 'embeddings' [n, 1280], output 'activations'
    "approachability_regression-discogs-effnet-1": (("approachability",), "regression"),
    "danceability-discogs-effnet-1": (BINARY["danceability"], "classifier"),
    "engagement_regression-discogs-effnet-1": (("engagement",), "regression"),
    "mood_aggressive-discogs-effnet-1": (BINARY["mood_aggressive"], "classifier"),
    "mood_happy-discogs-effnet-1": (BINARY["mood_happy"], "classifier"),
    "mood_relaxed-discogs-effnet-1": (BINARY["mood_relaxed"], "classifier"),
    "mood_sad-discogs-effnet-1": (BINARY["mood_sad"], "classifier"),
}

COPIES = {  # vendored byte for byte: source path → file name in models/weights/mtg
    "essentia-models/LICENSE": "LICENSE-essentia-models",
    "essentia.js/LICENSE": "LICENSE-essentia.js",
    "essentia-models/classification_heads/emomusic-msd-musicnn-1.pb": "emomusic-msd-musicnn-1.pb",
    "essentia-models/crepe/crepe-tiny-1.pb": "crepe-tiny-1.pb",
    "essentia-models/musicnn/genre_dortmund_musicnn_msd.pb": "genre_dortmund_musicnn_msd.pb",
    "essentia-models/tempocnn/deeptemp_k16.pb": "deeptemp_k16.pb",
    "essentia.js/effnet-based/discogs-effnet-bsdynamic-1.json": "discogs-effnet-bsdynamic-1.json",
    **{f"essentia.js/effnet-based/{stem}.onnx": f"{stem}.onnx" for stem in EFFNET_HEADS},
    **{
        f"{head.folder}/{name}": f"tfjs/{head.stem}/{name}"
        for head in TFJS_HEADS
        for name in ("model.json", "group1-shard1of1.bin")
    },
}
