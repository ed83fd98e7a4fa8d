"""Compare MTG's msd-musicnn-1 (TF.js copy in essentia.js) with the graph mirstream freezes from musicnn 0.1.0.

Two checks, printed as Markdown tables:
1. Tensor by tensor: convolution/dense kernels and biases by name; batch norms after folding the musicnn
   checkpoint's (gamma, beta, moving mean/variance, epsilon) into the TF.js converter's Scaled/Offset (conv
   layers) and mul/sub (dense layers) constants.
2. Outputs on audio: log-mel patches from Essentia's TensorflowInputMusiCNN (the rock clip decoded by the
   server's decoder at 16 kHz mono, a 440 Hz sine, white noise) through both: mirstream's .pb with Essentia's
   TensorflowPredict, MTG's TF.js graph with the numpy evaluator (tools/mtg/tfjs.py, float64).

Run with the project venv from the repository root (needs essentia-tensorflow; reads the MTG originals):
    .venv/bin/python tools/mtg/compare_backbone.py --source /work/shared/weights/mtg
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import graphdef  # noqa: E402
import tfjs  # noqa: E402

OUR_GRAPH = REPO / "models" / "weights" / "musicnn" / "msd-musicnn-1.pb"
EMBEDDING, TAGS = "model/dense/BiasAdd", "model/Sigmoid"
CONV_BN = [f"batch_normalization{'' if i == 0 else f'_{i}'}" for i in range(9)]  # FusedBatchNorm after convs
DENSE_BN = ["batch_normalization_9", "batch_normalization_10"]  # batchnorm/mul, batchnorm/sub after flatten/dense


def tensor_table(ours: graphdef.Graph, mtg: tfjs.TfjsModel) -> list[tuple[str, str, float]]:
    """(MTG tensor, shape, max |difference|) for every learned tensor of MTG's graph."""
    consts = ours.consts()
    rows = []
    for name, value in mtg.weights.items():
        if name in consts and value.dtype.kind == "f":
            rows.append((name, str(list(value.shape)), float(np.abs(value.astype(np.float64) - consts[name]).max())))
    for bn in CONV_BN + DENSE_BN:
        gamma, beta, mean, var = (
            consts[f"{bn}/{p}"].astype(np.float64) for p in ("gamma", "beta", "moving_mean", "moving_variance")
        )
        if bn in CONV_BN:
            eps = ours.node(f"model/{bn}/FusedBatchNormV3").float_attr("epsilon")
            scale_name, offset_name = f"model/{bn}/FusedBatchNorm/Scaled", f"model/{bn}/FusedBatchNorm/Offset"
        else:
            eps = float(consts[f"model/{bn}/batchnorm/add/y"])
            scale_name, offset_name = f"model/{bn}/batchnorm/mul", f"model/{bn}/batchnorm/sub"
        scale = gamma / np.sqrt(var + float(eps))
        for tf_name, folded in ((scale_name, scale), (offset_name, beta - mean * scale)):
            rows.append(
                (
                    f"{tf_name} (folded {bn})",
                    str(list(folded.shape)),
                    float(np.abs(mtg.weights[tf_name] - folded).max()),
                )
            )
    return rows


def mel_patches(audio: np.ndarray) -> np.ndarray:
    """[n, 187, 96] log-mel patches, hop 93 frames, exactly as TensorflowPredictMusiCNN cuts them."""
    from models.musicnn import PATCH_FRAMES, mel_bands, patch_stack

    return patch_stack(mel_bands(audio), PATCH_FRAMES, 93)


def signals() -> dict[str, np.ndarray]:
    """The audio the outputs are compared on, 16 kHz mono float32."""
    from models.base import InputSpec
    from serve_app.ingress.decode import decode, representation

    rock = representation(
        decode((REPO / "tests" / "data" / "rock_clip.opus").read_bytes(), 600.0), InputSpec(16000, "mono")
    )
    t = np.arange(15 * 16000) / 16000
    return {
        "rock_clip.opus (19.3 s)": rock.samples,
        "sine 440 Hz, -12 dBFS, 15 s": (0.25 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        "white noise 0.3 rms, 15 s": (0.3 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32),
    }


def output_table(mtg: tfjs.TfjsModel) -> list[tuple[str, int, float, float, float, float]]:
    """(signal, patches, max |Δ tags|, max |Δ embedding|, max |embedding|, max |Δ mean tags|) per signal."""
    from models.essentia_runtime import essentia_standard

    es = essentia_standard()
    import essentia

    predict = es.TensorflowPredict(
        graphFilename=str(OUR_GRAPH), inputs=["model/Placeholder"], outputs=[TAGS, EMBEDDING]
    )
    rows = []
    for label, audio in signals().items():
        x = mel_patches(audio)
        pool = essentia.Pool()
        pool.set("model/Placeholder", x[:, None])
        out = predict(pool)
        ours = {k: np.asarray(out[k]).reshape(len(x), -1) for k in (TAGS, EMBEDDING)}
        ref = tfjs.evaluate(mtg, {"model/Placeholder": x}, [TAGS, EMBEDDING])
        d_tags = np.abs(ours[TAGS] - ref[TAGS])
        d_emb = np.abs(ours[EMBEDDING] - ref[EMBEDDING])
        d_mean = np.abs(ours[TAGS].mean(0) - ref[TAGS].mean(0))
        rows.append(
            (
                label,
                len(x),
                float(d_tags.max()),
                float(d_emb.max()),
                float(np.abs(ref[EMBEDDING]).max()),
                float(d_mean.max()),
            )
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    """Print both tables; exit 1 if any learned tensor or output differs beyond float32 rounding."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="folder holding MTG's essentia.js/ (PROVENANCE.md)")
    args = parser.parse_args(argv)
    mtg = tfjs.load(args.source / "essentia.js" / "msd-musicnn-1")
    ours = graphdef.read_graph(OUR_GRAPH)
    rows = tensor_table(ours, mtg)
    print("| tensor | shape | max abs diff |\n|---|---|---|")
    for name, shape, diff in rows:
        print(f"| {name} | {shape} | {diff:.3g} |")
    outputs = output_table(mtg)
    print(
        "\n| signal | patches | max abs diff tags | max abs diff embedding | max abs embedding "
        "| max abs diff mean tags |"
    )
    print("|---|---|---|---|---|---|")
    for label, n, dt, de, emax, dm in outputs:
        print(f"| {label} | {n} | {dt:.3g} | {de:.3g} | {emax:.3g} | {dm:.3g} |")
    worst_weight = max(d for _, _, d in rows)
    worst_out = max(max(dt, de / max(emax, 1.0)) for _, _, dt, de, emax, _ in outputs)
    print(f"\nworst tensor difference {worst_weight:.3g}; worst output difference (embedding relative) {worst_out:.3g}")
    return 0 if worst_weight < 1e-4 and worst_out < 1e-5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
