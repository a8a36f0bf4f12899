"""A CLIP (OpenAI ViT architecture) for training, with OpenAI's state_dict
names, so the engine loads what this writes as it loads ViT-B/32
(worker/engine/clip/model.h): visual.conv1.weight, visual.transformer.
resblocks.N.attn.in_proj_weight, token_embedding.weight, logit_scale, ...
"""
import math
from collections import OrderedDict

import torch
import torch.nn as nn

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width, heads):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(width, width * 4)),
                                              ("gelu", QuickGELU()),
                                              ("c_proj", nn.Linear(width * 4, width))]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x, mask=None):
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width, layers, heads):
        super().__init__()
        self.resblocks = nn.ModuleList([ResidualAttentionBlock(width, heads) for _ in range(layers)])

    def forward(self, x, mask=None):
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTransformer(nn.Module):
    def __init__(self, resolution, patch, width, layers, embed):
        super().__init__()
        scale = width ** -0.5
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, width // 64)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed))

    def forward(self, x):
        x = self.conv1(x).flatten(2).permute(0, 2, 1)
        cls = self.class_embedding + torch.zeros(x.shape[0], 1, x.shape[-1], dtype=x.dtype)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding)
        x = self.transformer(x.permute(1, 0, 2)).permute(1, 0, 2)
        return self.ln_post(x[:, 0, :]) @ self.proj


class Clip(nn.Module):
    def __init__(self, embed=64, resolution=32, patch=4, vision_width=64, vision_layers=3,
                 text_width=64, text_layers=3, context=77, vocab=49408):
        super().__init__()
        self.visual = VisionTransformer(resolution, patch, vision_width, vision_layers, embed)
        self.token_embedding = nn.Embedding(vocab, text_width)
        self.positional_embedding = nn.Parameter(torch.empty(context, text_width))
        self.transformer = Transformer(text_width, text_layers, text_width // 64)
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.empty(text_width, embed))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        # OpenAI's initialisation (CLIP.initialize_parameters).
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.positional_embedding, std=0.01)
        proj_std = (text_width ** -0.5) * ((2 * text_layers) ** -0.5)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=text_width ** -0.5)
            nn.init.normal_(block.attn.out_proj.weight, std=proj_std)
            nn.init.normal_(block.mlp.c_fc.weight, std=(2 * text_width) ** -0.5)
            nn.init.normal_(block.mlp.c_proj.weight, std=proj_std)
        nn.init.normal_(self.text_projection, std=text_width ** -0.5)

    def encode_image(self, images01):
        """images01: (N, 3, R, R) in [0, 1] at the model's resolution."""
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        std = torch.tensor(STD).view(1, 3, 1, 1)
        return self.visual((images01 - mean) / std)

    def encode_text(self, tokens):
        """tokens: (N, L) int64 with an EOT (the largest id) in every row; L may
        be shorter than the context (the mask is causal, so rows past the last
        EOT change nothing)."""
        length = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:length]
        mask = torch.full((length, length), float("-inf")).triu_(1)
        x = self.transformer(x.permute(1, 0, 2), mask).permute(1, 0, 2)
        x = self.ln_final(x)
        return x[torch.arange(x.shape[0]), tokens.argmax(-1)] @ self.text_projection
