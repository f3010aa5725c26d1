"""Weights for the PyTorch Baker voice, read from the same tflite files that LiteRT runs."""
from __future__ import annotations

import re
from os import PathLike

import numpy as np
import torch

from .torch_modules import (
    FastSpeech2,
    FastSpeech2Config,
    MelGANConfig,
    MultiBandMelGAN,
    pqmf_synthesis_filters,
)

_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 9: np.int8}


class WeightError(ValueError):
    """The tflite file does not hold the graph these modules were written for."""


def dequantize(values: np.ndarray, quantization) -> np.ndarray:
    """(q - zero_point) * scale: one scale per tensor, or one per channel of quantizedDimension."""
    scale = np.asarray(quantization.scale, dtype=np.float32)
    zero = np.asarray(quantization.zeroPoint if quantization.zeroPoint is not None else [0])
    if scale.size > 1:
        shape = [1] * values.ndim
        shape[quantization.quantizedDimension] = scale.size
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values.astype(np.float32) - zero.astype(np.float32)) * scale).astype(np.float32)


class GraphConstants:
    """The constant inputs of a tflite graph's ops, found by the name of the tensor each op makes.

    Weights are looked up through the op that consumes them, not by their own tensor names: the
    converter merges identical constants under one name (a zero bias shared by many convs), so
    a weight's name can belong to another layer, while an op's output name is its own.
    """

    def __init__(self, path: str | PathLike):
        from ai_edge_litert.tools import flatbuffer_utils

        model = flatbuffer_utils.read_model(str(path))
        self._model = model
        self._graph = model.subgraphs[0]
        self._outputs: list[tuple[int, list[str]]] = []  # (op index, the names of its output)
        for index, op in enumerate(self._graph.operators):
            name = self._graph.tensors[op.outputs[0]].name.decode()
            self._outputs.append((index, name.split(";")))

    def tensor(self, index: int) -> np.ndarray | None:
        tensor = self._graph.tensors[index]
        data = self._model.buffers[tensor.buffer].data
        if data is None or tensor.type not in _DTYPES:
            return None
        values = np.frombuffer(bytes(data), dtype=_DTYPES[tensor.type]).reshape(tensor.shape)
        quantization = tensor.quantization
        if quantization is not None and quantization.scale is not None and len(quantization.scale):
            return dequantize(values, quantization)
        return values.astype(np.float32) if values.dtype == np.float16 else values

    def find(self, pattern: str) -> list[int]:
        """Op indices, in graph order, whose output name (or one of its fused names) is `pattern`
        followed by the digits the converter appends (MatMul1, conv1d2)."""
        regex = re.compile(pattern + r"\d*")
        return [index for index, names in self._outputs if any(regex.fullmatch(n) for n in names)]

    def constants(self, pattern: str) -> list[np.ndarray]:
        """The float (or dequantized) constant inputs of the one op `pattern` names that has any."""
        found = [values for values in map(self.constants_of, self.find(pattern)) if values]
        if len(found) != 1:
            raise WeightError(f"expected one op named {pattern!r} with weights, found {len(found)}")
        return found[0]

    def constants_of(self, op_index: int) -> list[np.ndarray]:
        op = self._graph.operators[op_index]
        values = [self.tensor(i) for i in op.inputs if i >= 0]
        return [v for v in values if v is not None and v.dtype == np.float32 and v.ndim > 0]

    def constant(self, pattern: str) -> np.ndarray:
        values = self.constants(pattern)
        if len(values) != 1:
            raise WeightError(f"expected one weight on {pattern!r}, found {len(values)}")
        return values[0]

    def int8_weight(self, pattern: str) -> tuple[np.ndarray, np.ndarray]:
        """The int8 weight of the op `pattern` names: (codes - zero point as float32, one scale
        per output channel), whether the file has one scale per tensor or one per channel."""
        found = []
        for op_index in self.find(pattern):
            for i in self._graph.operators[op_index].inputs:
                tensor = self._graph.tensors[i] if i >= 0 else None
                data = self._model.buffers[tensor.buffer].data if tensor is not None else None
                if data is not None and tensor.type == 9 and tensor.quantization is not None:
                    codes = np.frombuffer(bytes(data), np.int8).reshape(tensor.shape)
                    found.append((tensor, codes))
        if len(found) != 1:
            raise WeightError(f"expected one int8 weight on {pattern!r}, found {len(found)}")
        tensor, values = found[0]
        q = tensor.quantization
        scale = np.asarray(q.scale, dtype=np.float32)
        zero = np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], dtype=np.float32)
        if scale.size > 1 and q.quantizedDimension != 0:
            raise WeightError(f"{pattern!r}: per-channel scales on axis {q.quantizedDimension}")
        if zero.size > 1:
            zero = zero.reshape(-1, *[1] * (values.ndim - 1))
        codes = values.astype(np.float32) - zero
        return codes, np.broadcast_to(scale, values.shape[:1]).copy()

    def quantization_scale(self, tensor_name: str) -> float | None:
        for tensor in self._graph.tensors:
            if tensor.name.decode() == tensor_name:
                q = tensor.quantization
                return float(q.scale[0]) if q is not None and q.scale is not None else None
        raise WeightError(f"tensor {tensor_name!r} not in the graph")


def _conv(graph: GraphConstants, conv_op: str, bias_op: str) -> dict[str, np.ndarray]:
    """A float TF conv1d stored as CONV_2D [out, 1, k, in] plus its BiasAdd, for nn.Conv1d."""
    kernel, own_bias = graph.constants(conv_op)
    return {"weight": kernel[:, 0].transpose(0, 2, 1), "bias": own_bias + graph.constant(bias_op)}


def _int8_conv(graph: GraphConstants, conv_op: str, bias_op: str) -> dict[str, np.ndarray]:
    """An int8 conv1d (CONV_2D [out, 1, k, in]) plus its BiasAdd, for MaskedConv1d."""
    codes, scale = graph.int8_weight(conv_op)
    *_, own_bias = graph.constants(conv_op)  # CONV_2D's inputs: input, filter, bias
    return {
        "weight": codes[:, 0].transpose(0, 2, 1),
        "weight_scale": scale,
        "bias": own_bias + graph.constant(bias_op),
    }


def _int8_linear(graph: GraphConstants, matmul_op: str, bias_op: str) -> dict[str, np.ndarray]:
    codes, scale = graph.int8_weight(matmul_op)
    return {"weight": codes, "weight_scale": scale, "bias": graph.constant(bias_op)}


def _linear(graph: GraphConstants, matmul_op: str, bias_op: str) -> dict[str, np.ndarray]:
    return {"weight": graph.constant(matmul_op), "bias": graph.constant(bias_op)}


def _layer_norm(graph: GraphConstants, prefix: str) -> dict[str, np.ndarray]:
    # Exported as x * (gamma * rsqrt(var + eps)) + (beta - mean * ...): gamma feeds
    # batchnorm/mul, beta feeds batchnorm/sub.
    return {
        "weight": graph.constant(f"{prefix}/batchnorm/mul"),
        "bias": graph.constant(f"{prefix}/batchnorm/sub"),
    }


def _put(state: dict, name: str, parameters: dict[str, np.ndarray]) -> None:
    for suffix, values in parameters.items():
        state[f"{name}.{suffix}"] = values


def fastspeech2_state(
    path: str | PathLike, cfg: FastSpeech2Config = FastSpeech2Config()
) -> dict[str, torch.Tensor]:
    """A state dict for FastSpeech2 from fastspeech2_quan.tflite."""
    graph = GraphConstants(path)
    state: dict[str, np.ndarray] = {
        "embeddings.weight": graph.constant("embeddings/Gather"),
        "positions.weight": graph.constant(
            "embeddings/position_embeddings/Gather/resource_dequantize"
        ),
    }
    for stack, layers in (("encoder", cfg.encoder_layers), ("decoder", cfg.decoder_layers)):
        for i in range(layers):
            tf, pt = f"{stack}/layer_\\._{i}", f"{stack}.{i}"
            for part in ("query", "key", "value"):
                _put(state, f"{pt}.attention.{part}", _int8_linear(
                    graph,
                    f"{tf}/attention/self/{part}/Tensordot/MatMul",
                    f"{tf}/attention/self/{part}/BiasAdd",
                ))
            _put(state, f"{pt}.attention.output", _int8_linear(
                graph,
                f"{tf}/attention/output/dense/Tensordot/MatMul",
                f"{tf}/attention/output/dense/BiasAdd",
            ))
            _put(state, f"{pt}.attention.norm", _layer_norm(
                graph, f"{tf}/attention/output/LayerNorm"
            ))
            for n in (1, 2):
                _put(state, f"{pt}.feed_forward.conv{n}", _int8_conv(
                    graph,
                    f"{tf}/intermediate/conv1d_{n}/conv1d",
                    f"{tf}/intermediate/conv1d_{n}/BiasAdd",
                ))
            _put(state, f"{pt}.feed_forward.norm", _layer_norm(graph, f"{tf}/output/LayerNorm"))
    for predictor in ("duration", "f0", "energy"):
        # Keras numbered these scopes (sequential_8, dense_7); the numbers carry no meaning.
        tf, pt = f"{predictor}_predictor", f"{predictor}_predictor"
        for i in range(cfg.predictor_layers):
            _put(state, f"{pt}.convs.{i}", _int8_conv(
                graph,
                f"{tf}/sequential_\\d+/conv_\\._{i}/conv1d",
                f"{tf}/sequential_\\d+/conv_\\._{i}/BiasAdd",
            ))
            _put(state, f"{pt}.norms.{i}", _layer_norm(
                graph, f"{tf}/sequential_\\d+/LayerNorm_\\._{i}"
            ))
        _put(state, f"{pt}.dense", _linear(
            graph, f"{tf}/dense_\\d+/Tensordot/MatMul", f"{tf}/dense_\\d+/BiasAdd"
        ))
    for feature in ("f0", "energy"):
        _put(state, f"{feature}_embedding", _int8_conv(
            graph, f"{feature}_embeddings/conv1d", f"{feature}_embeddings/BiasAdd"
        ))
    # The graph names mel_before's bias add "Identity": it is the model's first output.
    _put(state, "mel_before", _int8_linear(graph, "mel_before/Tensordot/MatMul", "Identity"))
    for i in range(cfg.postnet_layers):
        _put(state, f"postnet.convs.{i}", _int8_conv(
            graph, f"postnet/conv_\\._{i}/conv1d", f"postnet/conv_\\._{i}/BiasAdd"
        ))
        _put(state, f"postnet.norms.{i}", {
            "weight": graph.constant(f"postnet/batch_norm_\\._{i}/batchnorm/mul_1"),
            "bias": graph.constant(f"postnet/batch_norm_\\._{i}/batchnorm/add_1"),
        })
    return {name: torch.from_numpy(np.array(v, dtype=np.float32)) for name, v in state.items()}


def mb_melgan_state(
    path: str | PathLike, cfg: MelGANConfig = MelGANConfig()
) -> dict[str, torch.Tensor]:
    """A state dict for MultiBandMelGAN from mb_melgan.tflite; checks the PQMF and int8 step too."""
    graph = GraphConstants(path)
    root = "sequential_\\d+"
    state: dict[str, np.ndarray] = {}
    _put(state, "first", _conv(graph, f"{root}/conv1d/conv1d", f"{root}/conv1d/BiasAdd"))
    for s in range(len(cfg.upsample_scales)):
        # TRANSPOSE_CONV kernels are [out, k, 1, in]; torch wants [in, out, k].
        scope = f"{root}/conv_transpose_\\._{s}/conv2d_transpose(_\\d+)?"
        (kernel,) = graph.constants(f"{scope}/conv2d_transpose")
        bias = graph.constant(f"{scope}/BiasAdd")
        state[f"upsamples.{s}.conv.weight"] = kernel[:, :, 0].transpose(2, 0, 1)
        state[f"upsamples.{s}.conv.bias"] = bias
        for b in range(len(cfg.dilations)):
            block = f"{root}/residual_stack_\\._{s}\\._\\._{b}"
            # The converter numbers convs across the whole model (conv1d_1, conv1d_2, ...);
            # in graph order a block's first conv is the dilated one, its second the 1x1.
            kernels = graph.find(f"{block}/conv1d_\\d+/conv1d")
            biases = graph.find(f"{block}/conv1d_\\d+/BiasAdd")
            if len(kernels) != 2 or len(biases) != 2:
                raise WeightError(f"expected two convs in residual block {s}.{b}")
            for name, kernel_op, bias_op in zip(("dilated", "project"), kernels, biases):
                kernel, own_bias = graph.constants_of(kernel_op)
                (bias,) = graph.constants_of(bias_op)
                state[f"stacks.{s}.{b}.{name}.weight"] = kernel[:, 0].transpose(0, 2, 1)
                state[f"stacks.{s}.{b}.{name}.bias"] = own_bias + bias
            _put(state, f"stacks.{s}.{b}.shortcut", _conv(
                graph, f"{block}/shortcut/conv1d", f"{block}/shortcut/BiasAdd"
            ))
    _put(state, "last", _conv(graph, f"{root}/conv1d_\\d+/conv1d", f"{root}/conv1d_\\d+/BiasAdd"))

    # The PQMF filters are built from the formula; the graph's own must be the same ones.
    synthesis = graph.constants("conv1d")  # [1, 1, taps + 1, subbands] plus a zero bias
    built = pqmf_synthesis_filters(cfg.subbands, cfg.pqmf_taps, cfg.pqmf_cutoff, cfg.pqmf_beta)
    if not np.allclose(synthesis[0][0, 0].T, built, atol=1e-6):
        raise WeightError("the vocoder's PQMF filters differ from the configured bank")
    # The int8 tensor the graph's QUANTIZE op writes the sub-bands to.
    step = graph.quantization_scale("sequential_4/activation_20/Tanh1")
    if cfg.subband_step and step and not np.isclose(step, cfg.subband_step):
        raise WeightError(f"the vocoder quantizes its sub-bands by {step}, not {cfg.subband_step}")
    return {name: torch.from_numpy(np.array(v, dtype=np.float32)) for name, v in state.items()}


def load_fastspeech2(path: str | PathLike) -> FastSpeech2:
    model = FastSpeech2()
    model.load_state_dict(fastspeech2_state(path), strict=True)
    return model.eval()


def load_mb_melgan(path: str | PathLike) -> MultiBandMelGAN:
    model = MultiBandMelGAN()
    model.load_state_dict(mb_melgan_state(path), strict=True)
    return model.eval()
