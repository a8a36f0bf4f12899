"""A StyleGAN2 generator for training, with rosinality stylegan2-pytorch's
parameter names, so the engine loads what this writes as it loads an official
checkpoint (worker/engine/stylegan2/generator.h).

The math is the reference's; the modulated convolution is written in the
per-batch form (scale the input by the style, one shared convolution, scale the
output by the demodulation coefficients), which is the same function as the
reference's grouped convolution and trains faster on a CPU.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

LR_MUL = 0.01  # the mapping network's learning-rate multiplier (rosinality's lr_mlp)


def blur_kernel():
    k = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k[None, :] * k[:, None]
    return k / k.sum()


def upfirdn(x, kernel, up=1, pad=(0, 0)):
    n, c, h, w = x.shape
    if up > 1:
        x = x.view(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.view(n, c, h * up, w * up)
    x = F.pad(x, [pad[0], pad[1], pad[0], pad[1]])
    k = torch.flip(kernel, [0, 1]).view(1, 1, *kernel.shape).repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def fused_lrelu(x, bias):
    shape = [1, -1] + [1] * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(*shape), 0.2) * math.sqrt(2)


class EqualLinear(nn.Module):
    def __init__(self, cin, cout, bias_init=0.0, lr_mul=1.0, activation=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init)))
        self.scale = 1 / math.sqrt(cin) * lr_mul
        self.lr_mul, self.activation = lr_mul, activation

    def forward(self, x):
        if self.activation:
            return fused_lrelu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


def conv_transpose_stride2(x, w):
    """F.conv_transpose2d(x, w.transpose(0, 1), stride=2) for a 3x3 kernel w
    (cout, cin, 3, 3), as four small convolutions, one per output phase (the
    CPU runs plain convolutions far faster than transposed ones)."""
    n, _, h, wd = x.shape
    taps = {0: [2, 0], 1: [1]}
    out = x.new_empty(n, w.shape[0], 2 * h + 1, 2 * wd + 1)
    for a in (0, 1):
        for b in (0, 1):
            k = w[:, :, taps[a]][:, :, :, taps[b]]
            out[:, :, a::2, b::2] = F.conv2d(x, k, padding=(1 - a, 1 - b))
    return out


class ModulatedConv2d(nn.Module):
    def __init__(self, cin, cout, k, style_dim, demodulate=True, upsample=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.modulation = EqualLinear(style_dim, cin, bias_init=1.0)
        self.scale = 1 / math.sqrt(cin * k * k)
        self.k, self.demodulate, self.upsample = k, demodulate, upsample
        if upsample:
            self.blur = Blur(blur_kernel() * 4, pad=(1, 1))

    def forward(self, x, style):
        s = self.modulation(style)  # (N, cin)
        w = self.scale * self.weight[0]  # (cout, cin, k, k)
        x = x * s[:, :, None, None]
        if self.upsample:
            out = conv_transpose_stride2(x, w)
        else:
            out = F.conv2d(x, w, padding=self.k // 2)
        if self.demodulate:
            # sum over (cin, k, k) of (w * s)^2, without the (N, cout, cin, k, k) tensor.
            d = torch.rsqrt(s.square() @ w.square().sum([2, 3]).t() + 1e-8)
            out = out * d[:, :, None, None]
        if self.upsample:
            out = self.blur(out)
        return out


class Blur(nn.Module):
    def __init__(self, kernel, pad):
        super().__init__()
        self.register_buffer("kernel", kernel)
        self.pad = pad

    def forward(self, x):
        return upfirdn(x, self.kernel, pad=self.pad)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        noise = x.new_empty(x.shape[0], 1, *x.shape[2:]).normal_()
        return x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x):
        return fused_lrelu(x, self.bias)


class StyledConv(nn.Module):
    def __init__(self, cin, cout, style_dim, upsample=False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, style_dim, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(cout)

    def forward(self, x, style):
        return self.activate(self.noise(self.conv(x, style)))


class Upsample(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("kernel", blur_kernel() * 4)

    def forward(self, x):
        return upfirdn(x, self.kernel, up=2, pad=(2, 1))


class ToRGB(nn.Module):
    def __init__(self, cin, style_dim, upsample=True):
        super().__init__()
        if upsample:
            self.upsample = Upsample()
        self.conv = ModulatedConv2d(cin, 3, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class ConstantInput(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, 4, 4))


class PixelNorm(nn.Module):
    def forward(self, x):
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class Generator(nn.Module):
    """channels: {4: c, 8: c, ..., size: c}."""

    def __init__(self, size, style_dim, n_mlp, channels):
        super().__init__()
        self.size, self.style_dim = size, style_dim
        layers = [PixelNorm()] + [EqualLinear(style_dim, style_dim, lr_mul=LR_MUL, activation=True)
                                  for _ in range(n_mlp)]
        self.style = nn.Sequential(*layers)
        self.input = ConstantInput(channels[4])
        self.conv1 = StyledConv(channels[4], channels[4], style_dim)
        self.to_rgb1 = ToRGB(channels[4], style_dim, upsample=False)
        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.noises = nn.Module()
        for i in range(self.num_layers):
            res = (i + 5) // 2
            self.noises.register_buffer(f"noise_{i}", torch.randn(1, 1, 2 ** res, 2 ** res))
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        cin = channels[4]
        for i in range(3, self.log_size + 1):
            cout = channels[2 ** i]
            self.convs.append(StyledConv(cin, cout, style_dim, upsample=True))
            self.convs.append(StyledConv(cout, cout, style_dim))
            self.to_rgbs.append(ToRGB(cout, style_dim))
            cin = cout
        self.n_latent = self.log_size * 2 - 2

    def mapping(self, z):
        return self.style(z)

    def forward(self, z):
        w = self.style(z)
        out = self.input.input.repeat(z.shape[0], 1, 1, 1)
        out = self.conv1(out, w)
        skip = self.to_rgb1(out, w)
        for c1, c2, rgb in zip(self.convs[::2], self.convs[1::2], self.to_rgbs):
            out = c1(out, w)
            out = c2(out, w)
            skip = rgb(out, w, skip)
        return skip
