"""Build models/weights/mtg from MTG's original files: TF.js heads → ONNX, the rest vendored byte for byte.

For each MSD-MusiCNN head in TF.js format (mood_happy/sad/relaxed/aggressive, danceability, emomusic) the graph
JSON is translated op by op into an ONNX graph (opset 13) holding the same float32 weights: ``_FusedMatMul``
(MatMul + BiasAdd [+ Relu], fused by the TF.js converter) becomes MatMul, Add [, Relu]; Mul/Add/AddV2 (folded
batch norm), MatMul, Softmax, Sigmoid, Relu map one to one; emomusic's dynamic flatten (Shape → StridedSlice →
Pack → Reshape to [batch, -1]) becomes Flatten(axis=1). The ONNX input is ``embeddings`` and the output
``activations``, like MTG's own Discogs-EffNet ONNX heads, so one head class runs both.

Every conversion is validated before anything is written: onnxruntime on the ONNX equals the float64 numpy
evaluation of the TF.js graph (tools/mtg/tfjs.py) on seeded embeddings, and the emomusic ONNX equals MTG's
emomusic .pb run by Essentia's TensorflowPredict2D. Output is deterministic: ``--check`` rebuilds in memory
and compares byte for byte with models/weights/mtg. Run from the repository root with the project venv plus
``onnx`` (tools/mtg/requirements.txt):

    .venv/bin/python tools/mtg/convert.py --source /work/shared/weights/mtg           # writes the folder
    .venv/bin/python tools/mtg/convert.py --source /work/shared/weights/mtg --check   # compares, writes nothing
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

import specs  # noqa: E402
import tfjs  # noqa: E402

OUT = REPO / "models" / "weights" / "mtg"
OPSET = 13
IR_VERSION = 7  # the IR of ONNX 1.8, enough for opset 13; read by every onnxruntime since 1.6
PRODUCER = "mirstream tools/mtg/convert.py"
INPUT, OUTPUT = "embeddings", "activations"
LICENSES = {"essentia.js": "CC BY-NC-ND 4.0", "essentia-models": "CC BY-NC-SA 4.0"}


def sha256(data: bytes) -> str:
    """Hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def read_sources(root: Path) -> dict[str, bytes]:
    """Every source file, refusing any whose SHA-256 is not the one MTG's originals have."""
    data = {}
    for rel, digest in specs.SOURCE_SHA256.items():
        blob = (root / rel).read_bytes()
        if sha256(blob) != digest:
            raise SystemExit(f"{root / rel}: SHA-256 {sha256(blob)} is not the original's {digest}")
        data[rel] = blob
    return data


# ---- TF.js → ONNX ------------------------------------------------------------------------------------------


def _head_nodes(model: tfjs.TfjsModel) -> tuple[list[Any], list[Any], str]:
    """Translate the graph: (ONNX nodes, initializers, name of the TF node that is the output)."""
    from onnx import helper, numpy_helper

    placeholder = model.placeholders()[0]
    names = {placeholder.name: INPUT}
    symbolic: dict[str, tuple[Any, ...]] = {}  # shape arithmetic: Shape → StridedSlice → Pack
    ints: dict[str, np.ndarray] = {}
    nodes, inits = [], []
    consumed = {i.split(":")[0] for n in model.nodes for i in n.inputs}
    for n in model.nodes:
        a = [i.split(":")[0] for i in n.inputs]
        if n.op == "Placeholder":
            continue
        if n.op == "Const":
            value = model.weights[n.name]
            if value.dtype.kind == "f":
                inits.append(numpy_helper.from_array(value.astype(np.float32), n.name))
                names[n.name] = n.name
            else:
                ints[n.name] = value
        elif n.op == "Shape":
            symbolic[n.name] = ("shape", a[0])
        elif n.op == "StridedSlice":
            begin, end = ints[a[1]].tolist(), ints[a[2]].tolist()
            if symbolic[a[0]][0] != "shape" or (begin, end) != ([0], [1]) or not n.attrs.get("shrink_axis_mask"):
                raise SystemExit(f"{n.name}: only the batch-size slice of a Shape is supported")
            symbolic[n.name] = ("batch", symbolic[a[0]][1])
        elif n.op == "Pack":
            if len(a) != 2 or symbolic.get(a[0], ("",))[0] != "batch" or a[1] not in ints:
                raise SystemExit(f"{n.name}: only Pack(batch size, constant) is supported")
            symbolic[n.name] = ("flatten", symbolic[a[0]][1], int(ints[a[1]]))
        elif n.op == "Reshape":
            kind, source, width = symbolic[a[1]]
            if kind != "flatten" or source != a[0]:
                raise SystemExit(f"{n.name}: only Reshape(x, [batch(x), k]) is supported")
            if width == -1:  # [batch, -1]: keep the batch axis, flatten the rest
                nodes.append(helper.make_node("Flatten", [names[a[0]]], [n.name], n.name, axis=1))
            else:
                inits.append(numpy_helper.from_array(np.array([-1, width], np.int64), f"{n.name}/shape"))
                nodes.append(helper.make_node("Reshape", [names[a[0]], f"{n.name}/shape"], [n.name], n.name))
            names[n.name] = n.name
        elif n.op == "_FusedMatMul":
            ops = n.attrs.get("fused_ops", [])
            if (
                ops not in (["BiasAdd"], ["BiasAdd", "Relu"])
                or n.attrs.get("transpose_a")
                or n.attrs.get("transpose_b")
            ):
                raise SystemExit(f"{n.name}: fused ops {ops} (or transposes) are not supported")
            scope = n.name.rsplit("/", 1)[0]
            biased = n.name if ops == ["BiasAdd"] else f"{scope}/BiasAdd"
            nodes.append(helper.make_node("MatMul", [names[a[0]], names[a[1]]], [f"{scope}/MatMul"], f"{scope}/MatMul"))
            nodes.append(helper.make_node("Add", [f"{scope}/MatMul", names[a[2]]], [biased], biased))
            if "Relu" in ops:
                nodes.append(helper.make_node("Relu", [biased], [n.name], n.name))
            names[n.name] = n.name
        elif n.op in ("MatMul", "Add", "AddV2", "Mul", "Sigmoid", "Softmax", "Relu"):
            if n.op == "MatMul" and (n.attrs.get("transpose_a") or n.attrs.get("transpose_b")):
                raise SystemExit(f"{n.name}: transposed MatMul is not supported")
            op = {"AddV2": "Add"}.get(n.op, n.op)
            extra = {"axis": -1} if op == "Softmax" else {}
            nodes.append(helper.make_node(op, [names[x] for x in a], [n.name], n.name, **extra))
            names[n.name] = n.name
        else:
            raise SystemExit(f"op {n.op} ({n.name}) is not supported by this converter")
    sinks = [n.name for n in model.nodes if n.name not in consumed and n.name in names and n.op != "Const"]
    if len(sinks) != 1:
        raise SystemExit(f"expected one output node, found {sinks}")
    return nodes, inits, sinks[0]


def head_to_onnx(head: specs.TfjsHead, model: tfjs.TfjsModel, sources: dict[str, str]) -> bytes:
    """The ONNX bytes for one TF.js head (deterministic: no timestamps, fixed IR/opset, metadata in order)."""
    import onnx
    from onnx import TensorProto, helper

    nodes, inits, out_node = _head_nodes(model)
    for node in nodes:  # the graph output gets the conventional name
        node.output[:] = [OUTPUT if o == out_node else o for o in node.output]
    in_shape = ["batch", *model.placeholders()[0].attrs["shape"][1:]]
    graph = helper.make_graph(
        nodes,
        head.stem,
        [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, in_shape)],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", len(head.classes)])],
        inits,
    )
    proto = helper.make_model(
        graph,
        producer_name=PRODUCER,
        producer_version="1",
        ir_version=IR_VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
        doc_string=f"{head.description}. Converted from MTG's TF.js graph model ({model.converted_by}); "
        f"weights (c) Universitat Pompeu Fabra, {LICENSES['essentia.js']}.",
    )
    helper.set_model_props(proto, {"classes": json.dumps(list(head.classes)), **sources})
    onnx.checker.check_model(proto, full_check=True)
    return proto.SerializeToString()


def check_head(head: specs.TfjsHead, model: tfjs.TfjsModel, onnx_bytes: bytes) -> float:
    """onnxruntime on the ONNX vs the numpy evaluation of the TF.js graph on seeded embeddings; max |diff|."""
    import onnxruntime as ort

    placeholder = model.placeholders()[0]
    shape = placeholder.attrs["shape"]
    x = np.random.default_rng(20200504).normal(0.0, 4.0, (32, *shape[1:])).astype(np.float32)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT], {INPUT: x})[0]
    out_node = _head_nodes(model)[2]
    want = tfjs.evaluate(model, {placeholder.name: x}, [out_node])[out_node]
    diff = float(np.abs(got - want).max())
    if got.shape != (32, len(head.classes)) or diff > 1e-5 * max(1.0, float(np.abs(want).max())):
        raise SystemExit(f"{head.stem}: ONNX differs from the TF.js graph by {diff} (shape {got.shape})")
    return diff


def check_emomusic_pb(onnx_bytes: bytes, pb_path: Path) -> float:
    """The emomusic ONNX (from TF.js) vs MTG's emomusic .pb in Essentia's TensorflowPredict2D; max |diff|."""
    import onnxruntime as ort

    from models.essentia_runtime import essentia_standard

    x = np.random.default_rng(7).normal(0.0, 4.0, (32, 200)).astype(np.float32)
    pb = essentia_standard().TensorflowPredict2D(
        graphFilename=str(pb_path), input="flatten_in_input", output="dense_out", dimensions=200
    )
    want = np.asarray(pb(x))
    got = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run([OUTPUT], {INPUT: x[:, None]})[0]
    diff = float(np.abs(got - want).max())
    if diff > 1e-4:
        raise SystemExit(f"emomusic: ONNX differs from the .pb run by Essentia by {diff}")
    return diff


# ---- metadata ----------------------------------------------------------------------------------------------


def _json(doc: dict[str, Any]) -> bytes:
    """Stable JSON bytes."""
    return (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode()


def _source(rel: str, data: dict[str, bytes]) -> dict[str, str]:
    """Provenance of one original file: repository, commit, path, SHA-256, licence."""
    repo, commit, base = specs.ESSENTIA_JS if rel.startswith("essentia.js/") else specs.ESSENTIA_MODELS
    path = rel.split("/", 1)[1]
    return {
        "repository": repo,
        "commit": commit,
        "path": f"{base}/{path}" if base else path,
        "sha256": sha256(data[rel]),
        "license": LICENSES[rel.split("/", 1)[0]],
    }


def head_metadata(
    stem: str,
    classes: tuple[str, ...],
    kind: str,
    dims: list[Any],
    sources: list[dict[str, str]],
    description: str,
    conversion: str,
) -> bytes:
    """MTG-style metadata for an ONNX head: classes in output order, tensor names, kind, provenance."""
    doc: dict[str, Any] = {
        "name": stem,
        "type": "regression" if kind == "regression" else "multi-class classifier",
        "description": description,
        "classes": list(classes),
        "schema": {
            "inputs": [{"name": INPUT, "type": "float", "shape": dims}],
            "outputs": [
                {"name": OUTPUT, "type": "float", "shape": ["batch", len(classes)], "output_purpose": "predictions"}
            ],
        },
        "inference": {"sample_rate": 16000, "embedding_model": stem.split("-", 1)[1], "runtime": "onnxruntime"},
        "sources": sources,
        "conversion": conversion,
    }
    if stem.startswith("emomusic"):
        doc["value_range"] = [1, 9]
    return _json(doc)


def graph_metadata(data: dict[str, bytes]) -> dict[str, bytes]:
    """Metadata for the vendored TensorFlow graphs (node names found in the GraphDefs, classes, algorithm)."""

    def src(rel: str) -> list[dict[str, str]]:
        return [_source(rel, data)]

    dortmund = {
        "name": "genre_dortmund_musicnn_msd",
        "type": "multi-class classifier",
        "description": "9 genres of the Dortmund Music Audio Benchmark set; a complete MusiCNN (all layers fine-tuned, "
        "none shared with msd-musicnn-1), sigmoid outputs",
        "classes": list(specs.DORTMUND),
        "schema": {
            "inputs": [{"name": "model/Placeholder", "type": "float", "shape": ["batch", 187, 96]}],
            "outputs": [
                {"name": "model/Sigmoid", "type": "float", "shape": ["batch", 9], "output_purpose": "predictions"},
                {
                    "name": "model/dense/BiasAdd",
                    "type": "float",
                    "shape": ["batch", 200],
                    "output_purpose": "embeddings",
                },
            ],
        },
        "inference": {"sample_rate": 16000, "algorithm": "TensorflowPredictMusiCNN"},
        "sources": src("essentia-models/musicnn/genre_dortmund_musicnn_msd.pb"),
    }
    tempocnn = {
        "name": "deeptemp_k16",
        "type": "multi-class classifier",
        "description": "TempoCNN (Schreiber & Müller, ISMIR 2018), 'deeptemp' directional filters, k=16: softmax over "
        "256 tempo classes 30..285 BPM per 256-frame patch of 40 mel bands (1024/512 at 11025 Hz)",
        "classes": [f"{30 + i} BPM" for i in range(256)],
        "schema": {
            "inputs": [{"name": "input", "type": "float", "shape": ["batch", 40, 256, 1]}],
            "outputs": [{"name": "output", "type": "float", "shape": ["batch", 256], "output_purpose": "predictions"}],
        },
        "inference": {"sample_rate": 11025, "algorithm": "TempoCNN"},
        "sources": src("essentia-models/tempocnn/deeptemp_k16.pb"),
    }
    crepe = {
        "name": "crepe-tiny-1",
        "type": "multi-label classifier",
        "description": "CREPE tiny (Kim et al., ICASSP 2018): 360 pitch-bin sigmoids (20 cents apart, from C1 "
        "+ 10 cents) per 1024-sample frame at 16 kHz",
        "classes": [f"bin {i}" for i in range(360)],
        "schema": {
            "inputs": [{"name": "frames", "type": "float", "shape": ["batch", 1024]}],
            "outputs": [
                {
                    "name": "model/classifier/Sigmoid",
                    "type": "float",
                    "shape": ["batch", 360],
                    "output_purpose": "predictions",
                }
            ],
        },
        "inference": {"sample_rate": 16000, "algorithm": "PitchCREPE"},
        "sources": src("essentia-models/crepe/crepe-tiny-1.pb"),
    }
    return {
        "genre_dortmund_musicnn_msd.json": _json(dortmund),
        "deeptemp_k16.json": _json(tempocnn),
        "crepe-tiny-1.json": _json(crepe),
    }


# ---- the folder ---------------------------------------------------------------------------------------------


def build(root: Path) -> tuple[dict[str, bytes], list[str]]:
    """Every output file name → bytes, plus a validation log (one line per check)."""
    data = read_sources(root)
    files = {name: data[rel] for rel, name in specs.COPIES.items()}
    log = []
    for head in specs.TFJS_HEADS:
        model = tfjs.load(root / head.folder)
        rels = [f"{head.folder}/model.json", f"{head.folder}/group1-shard1of1.bin"]
        props = {f"source_{Path(r).name}_sha256": sha256(data[r]) for r in rels}
        onnx_bytes = head_to_onnx(head, model, props)
        log.append(f"{head.stem}: ONNX vs numpy TF.js max |diff| {check_head(head, model, onnx_bytes):.3g}")
        if head.stem.startswith("emomusic"):
            pb = root / "essentia-models/classification_heads/emomusic-msd-musicnn-1.pb"
            diff = check_emomusic_pb(onnx_bytes, pb)
            log.append(f"{head.stem}: ONNX vs Essentia TensorflowPredict2D(.pb) max |diff| {diff:.3g}")
        files[f"{head.stem}.onnx"] = onnx_bytes
        dims = ["batch", *model.placeholders()[0].attrs["shape"][1:]]
        conversion = (
            "TF.js graph → ONNX opset 13 by tools/mtg/convert.py: _FusedMatMul → MatMul + Add (+ Relu); Mul/Add(V2), "
            "MatMul, Softmax, Sigmoid, Relu one to one; flatten (Shape/StridedSlice/Pack/Reshape to [batch, -1]) → "
            "Flatten(axis=1); float32 weights copied unchanged"
        )
        files[f"{head.stem}.json"] = head_metadata(
            head.stem, head.classes, head.kind, dims, [_source(r, data) for r in rels], head.description, conversion
        )
    for stem, (classes, kind) in specs.EFFNET_HEADS.items():
        rel = f"essentia.js/effnet-based/{stem}.onnx"
        files[f"{stem}.json"] = head_metadata(
            stem,
            classes,
            kind,
            ["batch", 1280],
            [_source(rel, data)],
            f"{stem.split('-')[0].replace('_', ' ')} head on 1280-d Discogs-EffNet embeddings (MTG's ONNX, tf2onnx)",
            "none: MTG's ONNX file vendored byte for byte",
        )
    files.update(graph_metadata(data))
    files["SHA256SUMS"] = "".join(f"{sha256(files[n])}  {n}\n" for n in sorted(files)).encode()
    return files, log


def main(argv: list[str] | None = None) -> int:
    """Write models/weights/mtg (default) or, with --check, compare a fresh build with it."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="MTG originals (the folder with PROVENANCE.md)")
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="rebuild and compare byte for byte; write nothing")
    args = parser.parse_args(argv)
    files, log = build(args.source)
    print("\n".join(log))
    if args.check:
        differ = [n for n, b in files.items() if not (args.out / n).is_file() or (args.out / n).read_bytes() != b]
        for name in differ:
            print(f"DIFFERS: {args.out / name}", file=sys.stderr)
        print("identical" if not differ else f"{len(differ)} file(s) differ")
        return 1 if differ else 0
    for name, blob in files.items():
        path = args.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(blob)
        print(f"{sha256(blob)}  {len(blob):>8}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
