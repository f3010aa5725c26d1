"""The Baker voice's networks in PyTorch: TensorFlowTTS's FastSpeech2 and Multi-band MelGAN."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Architecture and numerics follow the shipped tflite graphs op by op (see torch_weights.py for
# where each weight comes from). Every layer zeroes what lies past an item's own length before a
# convolution reads it, and the vocoder reflects each item at its own end, so that a padded batch
# gives each item what the graph computes for it alone (batch size 1, no padding).


@dataclass(frozen=True)
class FastSpeech2Config:
    """Sizes read off fastspeech2_quan.tflite; load_state_dict(strict=True) rejects other files."""

    vocab_size: int = 219
    hidden: int = 256
    heads: int = 2
    head_size: int = 16
    ffn_filters: int = 1024
    ffn_kernel: int = 3
    encoder_layers: int = 3
    decoder_layers: int = 3
    max_positions: int = 2049  # row 0 is what padded decoder frames look up
    predictor_filters: int = 256
    predictor_kernel: int = 3
    predictor_layers: int = 2
    embedding_kernel: int = 9  # the f0 and energy embeddings
    n_mels: int = 80
    postnet_layers: int = 5
    postnet_filters: int = 512
    postnet_kernel: int = 5
    layer_norm_eps: float = 1e-5
    # LiteRT runs the layers whose weights are int8 with int8 inputs too (dynamic range
    # quantization through XNNPACK: asymmetric, per row for dense layers, per item for convs).
    # Doing the same keeps durations and mels matching the LiteRT engine; False computes those
    # layers in float with the dequantized weights.
    int8_inputs: bool = True


@dataclass(frozen=True)
class MelGANConfig:
    """Sizes read off mb_melgan.tflite (TensorFlowTTS's Baker Multi-band MelGAN)."""

    n_mels: int = 80
    channels: int = 384
    kernel: int = 7
    upsample_scales: tuple[int, ...] = (3, 5, 5)
    stack_kernel: int = 3
    dilations: tuple[int, ...] = (1, 3, 9, 27)
    leaky_slope: float = 0.2
    subbands: int = 4
    pqmf_taps: int = 62
    pqmf_cutoff: float = 0.142  # TensorFlowTTS's default is 0.15; this voice was trained with 0.142
    pqmf_beta: float = 9.0
    # The shipped graph quantizes the sub-band signals to int8 (step 1/128) before synthesis;
    # doing the same keeps the audio sample-close to the LiteRT engine's.
    subband_step: float | None = 1 / 128


class AcousticOutput(NamedTuple):
    mel: torch.Tensor  # [B, T, n_mels] after the postnet; frames past `frames[b]` are padding
    mel_before: torch.Tensor  # [B, T, n_mels] before the postnet
    durations: torch.Tensor  # [B, L] frames per symbol (int64)
    frames: torch.Tensor  # [B] mel frames per item
    f0: torch.Tensor  # [B, L] predicted normalised f0, after f0_ratios, before the offset
    energy: torch.Tensor  # [B, L] predicted normalised energy, after energy_ratios


# --------------------------------------------------------------------------- FastSpeech2


def int8_codes(x: torch.Tensor, dims: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """Quantize as XNNPACK's dynamic quantization does: asymmetric int8 with the range taken
    over `dims` and widened to include zero, rounding half to even. -> (q - zero_point, scale)."""
    low = x.amin(dim=dims, keepdim=True).clamp(max=0)
    high = x.amax(dim=dims, keepdim=True).clamp(min=0)
    span = high - low
    # Multiply by 255 / span rather than divide by span / 255: saturated tanh outputs (-1 exactly)
    # sit on a rounding tie, and only this order of operations breaks the tie the same way.
    inverse = 255 / torch.where(span > 0, span, torch.ones_like(span))
    below, above = -128 - low * inverse, 127 - high * inverse
    zero = torch.where(low * inverse + high * inverse > 1, below, above).clamp(-128, 127).round()
    quantized = (torch.round(x * inverse) + zero).clamp(-128, 127)
    return quantized - zero, 1 / inverse


class Int8Linear(nn.Module):
    """A dense layer with int8 weights, computed the way LiteRT computes it (see int8_inputs).

    `weight` holds the int8 codes (as floats) and `weight_scale` one scale per output channel.
    Products of codes are integers, and a float32 matmul adds them exactly while the sums stay
    under 2**24 (always for these dense layers, in practice for the convs), as XNNPACK's int32
    accumulator does; only the final scaling rounds. Exact sums are what make the results
    agree with LiteRT's, and with themselves across batch sizes, to the last bit.
    """

    def __init__(self, in_features: int, out_features: int, int8_inputs: bool):
        super().__init__()
        self.int8_inputs = int8_inputs
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.weight_scale = nn.Parameter(torch.ones(out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.int8_inputs:
            return F.linear(x, self.weight) * self.weight_scale + self.bias
        codes, scale = int8_codes(x, (-1,))  # one range per row (time step)
        return F.linear(codes, self.weight) * scale * self.weight_scale + self.bias


class MaskedConv1d(nn.Module):
    """A 'same'-padded convolution over [B, T, C] with int8 weights (as Int8Linear) that reads
    zeros past each item's end."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, int8_inputs: bool):
        super().__init__()
        self.int8_inputs = int8_inputs
        self.weight = nn.Parameter(torch.zeros(out_channels, in_channels, kernel))
        self.weight_scale = nn.Parameter(torch.ones(out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x * mask
        scale = 1.0
        if self.int8_inputs:
            # One range per item: padding is zero and the range always includes zero, so an
            # item's range in a batch is the one it has alone.
            x, scale = int8_codes(x, (1, 2))
        y = F.conv1d(x.transpose(1, 2), self.weight, padding=self.weight.shape[-1] // 2)
        return y.transpose(1, 2) * scale * self.weight_scale + self.bias


class SelfAttention(nn.Module):
    """Multi-head self-attention with a residual connection and LayerNorm (BERT-style)."""

    def __init__(self, cfg: FastSpeech2Config):
        super().__init__()
        width = cfg.heads * cfg.head_size
        self.heads, self.head_size = cfg.heads, cfg.head_size
        self.query = Int8Linear(cfg.hidden, width, cfg.int8_inputs)
        self.key = Int8Linear(cfg.hidden, width, cfg.int8_inputs)
        self.value = Int8Linear(cfg.hidden, width, cfg.int8_inputs)
        self.output = Int8Linear(width, cfg.hidden, cfg.int8_inputs)
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, length, self.heads, self.head_size).transpose(1, 2)

        # Written out rather than F.scaled_dot_product_attention, and the weighted sum of values
        # taken in float64: its length is the batch's padded length, and a float32 sum's last
        # bits depend on it, bits that the int8 layers after it can turn into a whole rounding
        # step. Rounded back to float32, an item gets the same context in any batch.
        # `keys` [B, 1, 1, T] hides padded keys with -1e9, as the graph does (not -inf: an item
        # with no frames at all would get NaNs rather than weights nobody reads).
        scores = split(self.query(x)) @ split(self.key(x)).transpose(2, 3)
        scores = scores / math.sqrt(self.head_size)
        weights = torch.softmax(scores.masked_fill(~keys, -1e9), dim=-1)
        context = (weights.double() @ split(self.value(x)).double()).float()
        context = context.transpose(1, 2).reshape(batch, length, -1)
        return self.norm(self.output(context) + x) * mask


class FeedForward(nn.Module):
    """Two 1-D convolutions with Mish between them, a residual connection and LayerNorm."""

    def __init__(self, cfg: FastSpeech2Config):
        super().__init__()
        self.conv1 = MaskedConv1d(cfg.hidden, cfg.ffn_filters, cfg.ffn_kernel, cfg.int8_inputs)
        self.conv2 = MaskedConv1d(cfg.ffn_filters, cfg.hidden, cfg.ffn_kernel, cfg.int8_inputs)
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        hidden = F.mish(self.conv1(x, mask))
        return self.norm(self.conv2(hidden, mask) * mask + x) * mask


class TransformerLayer(nn.Module):
    def __init__(self, cfg: FastSpeech2Config):
        super().__init__()
        self.attention = SelfAttention(cfg)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.feed_forward(self.attention(x, mask, keys), mask)


class VariancePredictor(nn.Module):
    """(conv, ReLU, LayerNorm) x N, then a dense layer to one value per symbol."""

    def __init__(self, cfg: FastSpeech2Config):
        super().__init__()
        sizes = [cfg.hidden] + [cfg.predictor_filters] * cfg.predictor_layers
        self.convs = nn.ModuleList(
            MaskedConv1d(i, o, cfg.predictor_kernel, cfg.int8_inputs)
            for i, o in zip(sizes, sizes[1:])
        )
        self.norms = nn.ModuleList(
            nn.LayerNorm(cfg.predictor_filters, eps=cfg.layer_norm_eps) for _ in self.convs
        )
        self.dense = nn.Linear(cfg.predictor_filters, 1)  # float weights in the file

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        for conv, norm in zip(self.convs, self.norms):
            x = norm(F.relu(conv(x, mask)))
        # A dot product per symbol instead of a matmul, whose kernel (and so its last bits)
        # would depend on how many rows the batch has.
        return ((x * self.dense.weight[0]).sum(-1) + self.dense.bias) * mask.squeeze(-1)


class ChannelAffine(nn.Module):
    """A BatchNorm folded at export into one scale and one shift per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class Postnet(nn.Module):
    """Five convolutions (tanh after all but the last) predicting a residual for the mel."""

    def __init__(self, cfg: FastSpeech2Config):
        super().__init__()
        sizes = [cfg.n_mels] + [cfg.postnet_filters] * (cfg.postnet_layers - 1) + [cfg.n_mels]
        self.convs = nn.ModuleList(
            MaskedConv1d(i, o, cfg.postnet_kernel, cfg.int8_inputs)
            for i, o in zip(sizes, sizes[1:])
        )
        self.norms = nn.ModuleList(ChannelAffine(o) for o in sizes[1:])

    def forward(self, mel: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = mel
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(x, mask))
            if i < len(self.convs) - 1:
                x = torch.tanh(x)
        return x * mask


def regulate_length(x: torch.Tensor, durations: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat each symbol's vector for its duration, padding items to the longest.

    x [B, L, C], durations [B, L] -> (frames [B, T, C], frame mask [B, T])."""
    batch, _, channels = x.shape
    ends = durations.cumsum(1)
    frames = ends[:, -1]
    total = int(frames.max()) if batch else 0
    steps = torch.arange(total, device=x.device)
    # Frame t belongs to the first symbol whose cumulative end exceeds t; zero-length symbols
    # are skipped because their end equals the previous one.
    owner = torch.searchsorted(ends, steps.expand(batch, total).contiguous(), right=True)
    owner = owner.clamp(max=x.shape[1] - 1)
    mask = steps[None] < frames[:, None]
    expanded = x.gather(1, owner.unsqueeze(-1).expand(-1, -1, channels))
    return expanded * mask.unsqueeze(-1), mask


class FastSpeech2(nn.Module):
    """Symbol ids and per-item controls to mels, as the Baker FastSpeech2 graph computes them."""

    def __init__(self, cfg: FastSpeech2Config = FastSpeech2Config()):
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)
        # Sinusoidal in TensorFlowTTS, but stored (int8) in the file, so loaded like a weight.
        self.positions = nn.Embedding(cfg.max_positions, cfg.hidden)
        self.encoder = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.encoder_layers))
        self.duration_predictor = VariancePredictor(cfg)
        self.f0_predictor = VariancePredictor(cfg)
        self.energy_predictor = VariancePredictor(cfg)
        self.f0_embedding = MaskedConv1d(1, cfg.hidden, cfg.embedding_kernel, cfg.int8_inputs)
        self.energy_embedding = MaskedConv1d(1, cfg.hidden, cfg.embedding_kernel, cfg.int8_inputs)
        self.decoder = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.decoder_layers))
        self.mel_before = Int8Linear(cfg.hidden, cfg.n_mels, cfg.int8_inputs)
        self.postnet = Postnet(cfg)

    def _positions(self, count: int, mask: torch.Tensor) -> torch.Tensor:
        if count >= self.cfg.max_positions:
            raise ValueError(
                f"sequence of {count} steps is longer than the model's {self.cfg.max_positions - 1}"
            )
        index = torch.arange(1, count + 1, device=mask.device)
        return self.positions(index * mask.long())

    def forward(
        self,
        ids: torch.Tensor,  # [B, L] int64, 0 = padding (as in the graph's NotEqual(input_ids, 0))
        speed_ratios: torch.Tensor,  # [B] multiplies durations: > 1 is slower
        f0_ratios: torch.Tensor,  # [B] multiplies the normalised f0 contour
        energy_ratios: torch.Tensor,  # [B]
        f0_offsets: torch.Tensor,  # [B] added to the normalised f0 before it is embedded
    ) -> AcousticOutput:
        mask = ids != 0
        keys = mask[:, None, None, :]
        symbol_mask = mask.unsqueeze(-1).to(self.embeddings.weight.dtype)

        # The encoder's positions are 1..L for every item (the graph does not mask them);
        # padded steps never reach a real one, because attention and convs mask them out.
        x = self.embeddings(ids) + self._positions(ids.shape[1], torch.ones_like(mask))
        for layer in self.encoder:
            x = layer(x, symbol_mask, keys)

        log_durations = self.duration_predictor(x, symbol_mask)
        durations = torch.round(F.relu(torch.exp(log_durations) - 1.0) * speed_ratios[:, None])
        durations = durations.long()
        f0 = self.f0_predictor(x, symbol_mask) * f0_ratios[:, None]
        energy = self.energy_predictor(x, symbol_mask) * energy_ratios[:, None]
        shifted_f0 = (f0 + f0_offsets[:, None]).unsqueeze(-1)
        x = x + self.f0_embedding(shifted_f0, symbol_mask)
        x = x + self.energy_embedding(energy.unsqueeze(-1), symbol_mask)

        x, frame_mask = regulate_length(x, durations)
        frames = frame_mask.sum(1)
        frame_keys = frame_mask[:, None, None, :]
        x = x + self._positions(x.shape[1], frame_mask)
        frame_mask = frame_mask.unsqueeze(-1).to(x.dtype)
        for layer in self.decoder:
            x = layer(x, frame_mask, frame_keys)

        mel_before = self.mel_before(x)
        mel = mel_before + self.postnet(mel_before, frame_mask)
        return AcousticOutput(mel, mel_before, durations, frames, f0, energy)


# --------------------------------------------------------------------------- Multi-band MelGAN


def reflect_index(lengths: list[int], total: int, pad: int, device) -> torch.Tensor:
    """Gather indices that reflect-pad each item at its own end: [B, total + 2 * pad]."""
    steps = torch.arange(-pad, total + pad, device=device).abs()
    last = torch.tensor(lengths, device=device).sub(1).clamp(min=1)[:, None]
    folded = steps[None] % (2 * last)
    index = torch.where(folded > last, 2 * last - folded, folded)
    return index.clamp(max=max(total - 1, 0))


def reflect_pad(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    return x.gather(2, index[:, None, :].expand(-1, x.shape[1], -1))


def length_mask(lengths: list[int], total: int, device) -> torch.Tensor:
    """[B, 1, total] with 1 inside each item's length and 0 past it."""
    steps = torch.arange(total, device=device)
    return (steps[None] < torch.tensor(lengths, device=device)[:, None]).unsqueeze(1)


class ResidualBlock(nn.Module):
    """LeakyReLU, reflect pad, dilated conv, LeakyReLU, 1x1 conv; plus a 1x1 shortcut."""

    def __init__(self, channels: int, kernel: int, dilation: int, slope: float):
        super().__init__()
        self.slope = slope
        self.pad = dilation * (kernel - 1) // 2
        self.dilated = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.project = nn.Conv1d(channels, channels, 1)
        self.shortcut = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, pad_index: torch.Tensor) -> torch.Tensor:
        y = reflect_pad(F.leaky_relu(x, self.slope), pad_index)
        y = self.project(F.leaky_relu(self.dilated(y), self.slope))
        return y + self.shortcut(x)


class Upsample(nn.Module):
    """LeakyReLU then a transposed conv (kernel 2 x stride) cropped like TensorFlow's 'same'."""

    def __init__(self, in_channels: int, out_channels: int, scale: int, slope: float):
        super().__init__()
        self.scale, self.slope = scale, slope
        kernel = 2 * scale
        # TF 'same' crops (kernel - stride) // 2 in front and the rest at the back; torch crops
        # `padding` at both ends, so crop the front here and trim the back in forward().
        self.conv = nn.ConvTranspose1d(
            in_channels, out_channels, kernel, stride=scale, padding=(kernel - scale) // 2
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        # Past an item's end the graph sees nothing (zeros); the batch holds other items' padding.
        y = self.conv(F.leaky_relu(x, self.slope) * mask)
        return y[..., : x.shape[-1] * self.scale]


def pqmf_synthesis_filters(subbands: int, taps: int, cutoff: float, beta: float) -> np.ndarray:
    """The cosine-modulated synthesis filters of a pseudo-QMF bank: [subbands, taps + 1]."""
    n = np.arange(taps + 1) - taps / 2
    with np.errstate(invalid="ignore", divide="ignore"):
        prototype = np.sin(np.pi * cutoff * n) / (np.pi * n)
    prototype[taps // 2] = cutoff  # the limit of the sinc at n = 0
    prototype *= np.kaiser(taps + 1, beta)
    return np.stack([
        2 * prototype * np.cos((2 * k + 1) * np.pi / (2 * subbands) * n - (-1) ** k * np.pi / 4)
        for k in range(subbands)
    ])


class PQMFSynthesis(nn.Module):
    """Sub-band signals [B, K, N] to one full-band signal [B, K * N]."""

    def __init__(self, subbands: int, taps: int, cutoff: float, beta: float):
        super().__init__()
        self.subbands, self.taps = subbands, taps
        filters = pqmf_synthesis_filters(subbands, taps, cutoff, beta)
        # Zero-stuffing each band by K (gain K) then filtering it and summing the bands is one
        # strided transposed convolution with the time-reversed filters.
        weight = torch.from_numpy(subbands * filters[:, None, ::-1].copy()).float()
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.subbands
        y = F.conv_transpose1d(
            x, self.weight, stride=k, padding=self.taps // 2, output_padding=k - 1
        )
        return y[:, 0]


class MultiBandMelGAN(nn.Module):
    """Mel spectrograms [B, T, 80] to 24 kHz audio [B, T * hop] through 4 sub-bands and PQMF."""

    def __init__(self, cfg: MelGANConfig = MelGANConfig()):
        super().__init__()
        self.cfg = cfg
        self.first = nn.Conv1d(cfg.n_mels, cfg.channels, cfg.kernel)
        self.upsamples = nn.ModuleList()
        self.stacks = nn.ModuleList()
        channels = cfg.channels
        for scale in cfg.upsample_scales:
            self.upsamples.append(Upsample(channels, channels // 2, scale, cfg.leaky_slope))
            channels //= 2
            self.stacks.append(nn.ModuleList(
                ResidualBlock(channels, cfg.stack_kernel, d, cfg.leaky_slope) for d in cfg.dilations
            ))
        self.last = nn.Conv1d(channels, cfg.subbands, cfg.kernel)
        self.pqmf = PQMFSynthesis(cfg.subbands, cfg.pqmf_taps, cfg.pqmf_cutoff, cfg.pqmf_beta)

    def subbands(self, mel: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        """[B, T, n_mels] -> [B, K, T * hop / K]; lengths are each item's frames."""
        cfg = self.cfg
        edge = cfg.kernel // 2
        x = mel.transpose(1, 2)
        total = x.shape[-1]
        x = self.first(reflect_pad(x, reflect_index(lengths, total, edge, x.device)))
        for upsample, stack in zip(self.upsamples, self.stacks):
            x = upsample(x, length_mask(lengths, total, x.device))
            lengths = [n * upsample.scale for n in lengths]
            total = x.shape[-1]
            for block in stack:
                x = block(x, reflect_index(lengths, total, block.pad, x.device))
        x = F.leaky_relu(x, cfg.leaky_slope)
        x = torch.tanh(self.last(reflect_pad(x, reflect_index(lengths, total, edge, x.device))))
        if cfg.subband_step:
            # int8 quantize-dequantize as the graph's QUANTIZE op does: round half away from zero.
            q = torch.sign(x) * torch.floor(x.abs() / cfg.subband_step + 0.5)
            x = q.clamp(-128, 127) * cfg.subband_step
        return x * length_mask(lengths, total, x.device)

    def forward(self, mel: torch.Tensor, lengths: list[int]) -> torch.Tensor:
        return self.pqmf(self.subbands(mel, lengths))
