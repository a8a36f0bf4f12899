#!/usr/bin/python3
"""Baseline timings in PyTorch, formulated the way the research code runs.

restyle-bench reports the C++ engine; this script times the same workloads in
Python with the same torch build, in the formulation of the reference
implementations (OpenAI CLIP's nn.MultiheadAttention transformer run over all
77 text positions; rosinality StyleGAN2's per-sample grouped modulated
convolution, transposed-convolution upsampling followed by a separate blur,
and unfused elementwise passes). It is our own code: it reproduces the
reference's *formulation* so both sides can be timed in one shell session on
one machine, not its source.

Output: one JSON line per benchmark, with the same names as restyle-bench plus
the prefix "ref/", e.g. {"name": "ref/clip/encode_image/vit_b32/b8", ...}.

    /usr/bin/python3 bench/reference_baseline.py [--filter SUBSTRING] [--threads N]
        [--device cpu|cuda] [--precision default|fp32|tf32] [--cudnn-benchmark]

On CUDA it runs as the research code does there: CLIP in float16 with
LayerNorm computed in float32 (what clip.load gives on a GPU), and PyTorch's
default TF32 settings unless --precision says otherwise. The 1024 adaptation
steps run on CUDA only.
"""
import argparse
import json
import math
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

DEVICE = "cpu"  # --device; on "cuda" every tensor is made there (torch default device)


# --------------------------------------------------------------------------
# CLIP (ViT), formulated like the reference: batch-second layout,
# nn.MultiheadAttention with a float causal mask, fp32 LayerNorm, QuickGELU.

class LayerNorm(nn.LayerNorm):
    """Computes in float32 and returns the input's dtype (CLIP's own LayerNorm)."""

    def forward(self, x):
        return super().forward(x.float()).type(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class Block(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, width * 4), QuickGELU(),
                                 nn.Linear(width * 4, width))
        self.ln_2 = LayerNorm(width)

    def forward(self, x, mask):
        h = self.ln_1(x)
        if mask is not None:
            mask = mask.to(h.dtype)  # as CLIP casts its mask to the block's dtype
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.blocks = nn.ModuleList([Block(width, heads) for _ in range(layers)])

    def forward(self, x, mask=None):
        for b in self.blocks:
            x = b(x, mask)
        return x


class Clip(nn.Module):
    def __init__(self, res=224, patch=32, vwidth=768, vlayers=12, twidth=512, tlayers=12,
                 embed=512, ctx=77, vocab=49408):
        super().__init__()
        grid = res // patch
        self.conv1 = nn.Conv2d(3, vwidth, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(torch.randn(vwidth) * 0.02)
        self.vpos = nn.Parameter(torch.randn(grid * grid + 1, vwidth) * 0.02)
        self.ln_pre = LayerNorm(vwidth)
        self.visual = Transformer(vwidth, vlayers, vwidth // 64)
        self.ln_post = LayerNorm(vwidth)
        self.proj = nn.Parameter(torch.randn(vwidth, embed) * 0.02)
        self.token_embedding = nn.Embedding(vocab, twidth)
        self.tpos = nn.Parameter(torch.randn(ctx, twidth) * 0.01)
        self.text = Transformer(twidth, tlayers, twidth // 64)
        self.ln_final = LayerNorm(twidth)
        self.text_projection = nn.Parameter(torch.randn(twidth, embed) * 0.02)
        mask = torch.full((ctx, ctx), float("-inf")).triu_(1)
        self.register_buffer("mask", mask)
        if DEVICE == "cuda":  # clip.load on a GPU: float16 weights
            self.to_fp16_like_clip()

    def to_fp16_like_clip(self):
        """clip.load's convert_weights: convolutions, linears, attention and the
        two projections in float16; LayerNorms and embeddings stay float32."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.half()
            elif isinstance(m, nn.MultiheadAttention):
                m.in_proj_weight.data = m.in_proj_weight.data.half()
                m.in_proj_bias.data = m.in_proj_bias.data.half()
        self.proj.data = self.proj.data.half()
        self.text_projection.data = self.text_projection.data.half()

    @property
    def dtype(self):
        return self.conv1.weight.dtype

    def encode_image(self, x):
        x = self.conv1(x.type(self.dtype)).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding.to(x.dtype) + torch.zeros(x.shape[0], 1, x.shape[-1],
                                                              dtype=x.dtype)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.vpos.to(x.dtype))
        x = self.visual(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj

    def encode_text(self, tokens):
        x = self.token_embedding(tokens).type(self.dtype) + self.tpos.type(self.dtype)
        x = self.text(x.permute(1, 0, 2), self.mask).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ self.text_projection


# --------------------------------------------------------------------------
# StyleGAN2 (rosinality layout), formulated like the reference: modulated
# convolution as one grouped convolution with a group per sample, upsampling by
# a grouped transposed convolution followed by a separate blur (pad + conv with
# the flipped kernel), ToRGB skip upsampled by zero insertion + blur.

def make_kernel(k):
    k = torch.tensor(k, dtype=torch.float32)
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
    return F.leaky_relu(x + bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


class ModConv(nn.Module):
    def __init__(self, cin, cout, k, style_dim, demod=True, up=False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, cout, cin, k, k))
        self.mod_w = nn.Parameter(torch.randn(cin, style_dim))
        self.mod_b = nn.Parameter(torch.ones(cin))
        self.scale = 1 / math.sqrt(cin * k * k)
        self.demod, self.up, self.k, self.cin, self.cout = demod, up, k, cin, cout
        self.style_scale = 1 / math.sqrt(style_dim)
        if up:
            self.register_buffer("blur", make_kernel([1, 3, 3, 1]) * 4)

    def forward(self, x, style):
        n = x.shape[0]
        s = F.linear(style, self.mod_w * self.style_scale, self.mod_b).view(n, 1, self.cin, 1, 1)
        w = self.scale * self.weight * s
        if self.demod:
            d = torch.rsqrt(w.pow(2).sum([2, 3, 4]) + 1e-8)
            w = w * d.view(n, self.cout, 1, 1, 1)
        w = w.view(n * self.cout, self.cin, self.k, self.k)
        if self.up:
            x = x.view(1, n * self.cin, *x.shape[2:])
            w = w.view(n, self.cout, self.cin, self.k, self.k).transpose(1, 2).reshape(
                n * self.cin, self.cout, self.k, self.k)
            out = F.conv_transpose2d(x, w, padding=0, stride=2, groups=n)
            out = out.view(n, self.cout, *out.shape[2:])
            return upfirdn(out, self.blur, pad=(1, 1))
        x = x.view(1, n * self.cin, *x.shape[2:])
        out = F.conv2d(x, w, padding=self.k // 2, groups=n)
        return out.view(n, self.cout, *out.shape[2:])


class StyledConv(nn.Module):
    def __init__(self, cin, cout, style_dim, up=False):
        super().__init__()
        self.conv = ModConv(cin, cout, 3, style_dim, up=up)
        self.noise_w = nn.Parameter(torch.zeros(1))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, style):
        out = self.conv(x, style)
        noise = out.new_empty(out.shape[0], 1, *out.shape[2:]).normal_()
        return fused_lrelu(out + self.noise_w * noise, self.bias)


class ToRGB(nn.Module):
    def __init__(self, cin, style_dim, up=True):
        super().__init__()
        self.conv = ModConv(cin, 3, 1, style_dim, demod=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))
        self.up = up
        if up:
            self.register_buffer("kernel", make_kernel([1, 3, 3, 1]) * 4)

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + upfirdn(skip, self.kernel, up=2, pad=(2, 1))
        return out


class Generator(nn.Module):
    def __init__(self, size, style_dim=512, n_mlp=8, cm=2):
        super().__init__()
        ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm,
              512: 32 * cm, 1024: 16 * cm}
        self.style = nn.ModuleList([nn.Linear(style_dim, style_dim) for _ in range(n_mlp)])
        self.input = nn.Parameter(torch.randn(1, ch[4], 4, 4))
        self.conv1 = StyledConv(ch[4], ch[4], style_dim)
        self.to_rgb1 = ToRGB(ch[4], style_dim, up=False)
        self.convs, self.to_rgbs = nn.ModuleList(), nn.ModuleList()
        cin = ch[4]
        log = int(math.log2(size))
        for i in range(3, log + 1):
            cout = ch[2 ** i]
            self.convs.append(StyledConv(cin, cout, style_dim, up=True))
            self.convs.append(StyledConv(cout, cout, style_dim))
            self.to_rgbs.append(ToRGB(cout, style_dim))
            cin = cout
        self.n_latent = 2 * log - 2

    def mapping(self, z):
        x = z * torch.rsqrt(torch.mean(z ** 2, dim=1, keepdim=True) + 1e-8)
        for lin in self.style:
            x = F.leaky_relu(F.linear(x, lin.weight * 0.01 / math.sqrt(x.shape[1]),
                                      lin.bias * 0.01), 0.2) * math.sqrt(2)
        return x

    def forward(self, z, input_is_latent=False):
        x = z if input_is_latent else self.mapping(z)
        latent = x if x.dim() == 3 else x.unsqueeze(1).repeat(1, self.n_latent, 1)
        out = self.input.repeat(z.shape[0], 1, 1, 1)
        out = self.conv1(out, latent[:, 0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for c1, c2, rgb in zip(self.convs[::2], self.convs[1::2], self.to_rgbs):
            out = c1(out, latent[:, i])
            out = c2(out, latent[:, i + 1])
            skip = rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


# --------------------------------------------------------------------------

def clip_tokens(batch, length=77):
    # "a photo of a <word>" style prompts: SOT, 5 words, EOT, padding.
    t = torch.zeros(batch, length, dtype=torch.long)
    t[:, 0] = 49406
    t[:, 1:6] = torch.randint(1, 49000, (batch, 5))
    t[:, 6] = 49407
    return t


# --------------------------------------------------------------------------
# One IPL iteration of each stage, the way the reference loop runs it: CLIP
# weights not frozen (their gradients computed), template and base texts
# re-encoded every iteration over 77 positions, prompt texts run through the
# transformer one sample at a time, fresh noise in every generator call, and
# layer selection backpropagating into every generator weight.

TEMPLATES = 79


class Mapper(nn.Module):
    def __init__(self, d=512, n_ctx=4, width=512):
        super().__init__()
        self.lins = nn.ModuleList([nn.Linear(d, d) for _ in range(3)] +
                                  [nn.Linear(d, n_ctx * width)])
        self.n_ctx, self.width = n_ctx, width

    def forward(self, w):
        x = w * torch.rsqrt(torch.mean(w ** 2, dim=1, keepdim=True) + 1e-8)
        for lin in self.lins:
            x = F.leaky_relu(F.linear(x, lin.weight * 0.01 / math.sqrt(x.shape[1]),
                                      lin.bias * 0.01), 0.2) * math.sqrt(2)
        return x.view(-1, self.n_ctx, self.width)


def clip_preprocess(x, n_px=224):
    x = (x + 1) / 2
    x = F.interpolate(x, size=(n_px, n_px), mode="bicubic", align_corners=False)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    return (x - mean) / std


def prompt_features(clip, prompts, tokens):
    # Per sample, 77 positions, as the reference's text_encoder loop does.
    emb = clip.token_embedding(tokens).type(clip.dtype)
    feats = []
    for j in range(prompts.shape[0]):
        x = torch.cat([emb[:, :1], prompts[j:j + 1].type(emb.dtype),
                       emb[:, 1 + prompts.shape[1]:]], 1)
        x = x + clip.tpos.type(clip.dtype)
        x = clip.text(x.permute(1, 0, 2), clip.mask).permute(1, 0, 2)
        x = clip.ln_final(x)
        feats.append(x[torch.arange(1), tokens.argmax(-1)] @ clip.text_projection)
    return torch.cat(feats)


def normalize(x):
    return x / x.norm(dim=-1, keepdim=True)


def source_and_target_prompts(clip, prompts, ctx):
    """The prompt features for the source and the target class: the reference
    encodes the same prompt batch twice, once per class word (the two token
    sets differ only in that word; one random token set stands in for both)."""
    return prompt_features(clip, prompts, ctx), prompt_features(clip, prompts, ctx)


def stage1_iteration(batch, size=256):
    def prep():
        clip, g, mapper = Clip(), Generator(size), Mapper()
        for p in g.parameters():
            p.requires_grad_(False)
        opt = torch.optim.Adam(mapper.parameters(), lr=0.05)
        tmpl = clip_tokens(TEMPLATES)
        base = clip_tokens(1)
        ctx = clip_tokens(1)

        def step():
            z = torch.randn(batch, 512)
            with torch.no_grad():
                w = g.mapping(z)
            src, tgt = source_and_target_prompts(clip, mapper(w), ctx)
            with torch.no_grad():
                images = g(z)
            img = normalize(clip.encode_image(clip_preprocess(images)))
            s = normalize(src + clip.encode_text(base))
            t = normalize(tgt + clip.encode_text(base))
            ts = normalize(clip.encode_text(tmpl)).mean(0, keepdim=True)
            tt = normalize(clip.encode_text(tmpl)).mean(0, keepdim=True)
            logits = 100.0 * img @ s.t()
            labels = torch.arange(batch)
            loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.t(), labels)) / 2
            loss = loss + (1 - F.cosine_similarity(t, tt)).mean() + \
                (1 - F.cosine_similarity(s, ts)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return step
    return prep


def stage2_iteration(batch=2, size=256, select_batch=8):
    k = int(2 * (2 * math.log2(size) - 2) / 3)  # 9 at 256, 12 at 1024

    def prep():
        clip, gs, mapper = Clip(), Generator(size), Mapper()
        gt = Generator(size)
        gt.load_state_dict(gs.state_dict())
        ema = Generator(size)
        ema.load_state_dict(gs.state_dict())
        for m in (gs, mapper):
            for p in m.parameters():
                p.requires_grad_(False)
        r = 4 / 5
        opt = torch.optim.Adam(gt.parameters(), lr=0.002 * r, betas=(0, 0.99 ** r))
        target_tokens = clip_tokens(1)
        ctx = clip_tokens(1)
        base = clip_tokens(1)
        layers = [gt.conv1] + [gt.to_rgb1] + list(gt.convs)

        def step():
            # Adaptive layer selection.
            for p in gt.parameters():
                p.requires_grad_(True)
            z = torch.randn(select_batch, 512)
            with torch.no_grad():
                w0 = gt.mapping(z).unsqueeze(1).repeat(1, gt.n_latent, 1)
            w = w0.clone().requires_grad_(True)
            sgd = torch.optim.SGD([w], lr=0.01)
            img = normalize(clip.encode_image(clip_preprocess(gt(w, input_is_latent=True))))
            txt = normalize(clip.encode_text(target_tokens))
            loss = (1 - 100.0 * img @ txt.t() / 100).mean()
            sgd.zero_grad()
            loss.backward()
            sgd.step()
            chosen = (w - w0).abs().mean(-1).mean(0).topk(k).indices.tolist()
            for p in gt.parameters():
                p.requires_grad_(False)
            for i in chosen:
                for p in layers[min(i, len(layers) - 1)].parameters():
                    p.requires_grad_(True)
            # The directional step.
            z = torch.randn(batch, 512)
            with torch.no_grad():
                w = gs.mapping(z)
                src, tgt = source_and_target_prompts(clip, mapper(w), ctx)
                xs = gs(w, input_is_latent=True)
            b = clip.encode_text(base)
            d_text = normalize(normalize(tgt + b) - normalize(src + b))
            xt = gt(w, input_is_latent=True)
            d_img = normalize(normalize(clip.encode_image(clip_preprocess(xt))) -
                              normalize(clip.encode_image(clip_preprocess(xs))))
            loss = (1 - F.cosine_similarity(d_img, d_text)).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                src_state = gt.state_dict()
                for name, v in ema.state_dict().items():
                    v.copy_(v * 0.99 + src_state[name] * 0.01)
        return step
    return prep


def benchmarks():
    def clip_image(batch):
        def prep():
            m = Clip().eval()
            x = torch.randn(batch, 3, 224, 224)
            return lambda: m.encode_image(x)
        return prep

    def clip_text(batch):
        def prep():
            m = Clip().eval()
            t = clip_tokens(batch)
            return lambda: m.encode_text(t)
        return prep

    def sg2(size, batch):
        def prep():
            g = Generator(size).eval()
            z = torch.randn(batch, 512)
            return lambda: g(z)
        return prep

    return [
        ("clip/encode_image/vit_b32", "ViT-B/32 224x224", 1, clip_image(1), 5),
        ("clip/encode_image/vit_b32/batch8", "ViT-B/32 224x224", 8, clip_image(8), 3),
        ("clip/encode_text/vit_b32/full77", "ViT-B/32 text, 77 tokens", 32, clip_text(32), 3),
        ("sg2/forward/256/b1", "StyleGAN2 256 config-f", 1, sg2(256, 1), 3),
        ("sg2/forward/256/b4", "StyleGAN2 256 config-f", 4, sg2(256, 4), 3),
        ("sg2/forward/1024/b1", "StyleGAN2 1024 config-f", 1, sg2(1024, 1), 2),
        ("sg2/forward/1024/b4", "StyleGAN2 1024 config-f", 4, sg2(1024, 4), 2),
        ("adapt/stage1_step/256/vit_b32/b8", "IPL stage 1, SG2 256 + ViT-B/32", 8,
         stage1_iteration(8), 1),
        ("adapt/stage2_step/256/vit_b32/b2", "IPL stage 2, SG2 256 + ViT-B/32", 2,
         stage2_iteration(), 1),
        ("adapt/stage1_step/1024/vit_b32/b32", "IPL stage 1, SG2 1024 + ViT-B/32", 32,
         stage1_iteration(32, 1024), 3),
        ("adapt/stage2_step/1024/vit_b32/b2", "IPL stage 2, SG2 1024 + ViT-B/32", 2,
         stage2_iteration(2, 1024), 3),
    ]


CUDA_ONLY = ("/1024/vit_b32/",)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--filter", default="")
    p.add_argument("--list", action="store_true", help="print the workload names as JSON lines")
    p.add_argument("--names", default="", help="comma-separated exact names (overrides --filter)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precision", default="default", choices=["default", "fp32", "tf32"],
                   help="CUDA: PyTorch's TF32 defaults, TF32 off, or TF32 on")
    p.add_argument("--cudnn-benchmark", action="store_true")
    args = p.parse_args()
    global DEVICE
    DEVICE = args.device
    cuda = DEVICE == "cuda"
    if cuda:
        torch.set_default_device("cuda")
        if args.precision != "default":
            torch.backends.cuda.matmul.allow_tf32 = args.precision == "tf32"
            torch.backends.cudnn.allow_tf32 = args.precision == "tf32"
        torch.backends.cudnn.benchmark = args.cudnn_benchmark

    def sync():
        if cuda:
            torch.cuda.synchronize()
    if args.list:
        for name, shape, batch, _, _ in benchmarks():
            print(json.dumps({"name": name, "shape": shape, "batch": batch}))
        return 0
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name, shape, batch, prep, iters in benchmarks():
        if args.names:
            if name not in args.names.split(","):
                continue
        elif args.filter not in name:
            continue
        if not cuda and any(tag in name for tag in CUDA_ONLY):
            continue
        with torch.set_grad_enabled(name.startswith("adapt/")):
            fn = prep()
            fn()  # warm-up
            sync()
            times = []
            for _ in range(iters):
                t0 = time.perf_counter()
                fn()
                sync()
                times.append((time.perf_counter() - t0) * 1000)
        print(json.dumps({
            "name": "ref/" + name, "shape": shape, "batch": batch, "threads": args.threads,
            "iters": iters, "median_ms": statistics.median(times), "min_ms": min(times),
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "device": DEVICE, "precision": args.precision,
            "cudnn_benchmark": args.cudnn_benchmark,
            "torch": torch.__version__}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
