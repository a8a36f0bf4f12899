"""The toy world: procedural scenes, their styles, captions and tokens.

A scene is one shape (circle, square, triangle, cross) of one colour (red,
green, blue, yellow, purple, orange) at a position and size, on a background
tone. The same scene renders in five styles ("photo" with shading and a
shadow, "sketch" with coloured outlines on paper, "pixel art" in 4-pixel
blocks, "neon" glowing outlines on black, "watercolor" with blotchy washes and
a darker rim), at 32x32 pixels. Everything is a pure function of its inputs: a
scene comes from a seed (`random_scene`), or from a latent vector
(`scene_from_latent`: the map the toy generator is trained to reproduce).

Only numpy is needed here; the training scripts beside this file add torch.
"""
import gzip
import math
import os
import re

import numpy as np

SIZE = 32
SUPERSAMPLE = 4

SHAPES = ["circle", "square", "triangle", "cross"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]
# The style names as a person types them (a job's target text) and the noun a
# caption uses for them.
STYLES = ["photo", "sketch", "pixel art", "neon", "watercolor"]
STYLE_NOUNS = {"photo": "photo", "sketch": "sketch", "pixel art": "pixel art picture",
               "neon": "neon sign", "watercolor": "watercolor painting"}
RGB = {
    "red": (0.86, 0.14, 0.12), "green": (0.18, 0.68, 0.22), "blue": (0.16, 0.32, 0.88),
    "yellow": (0.95, 0.83, 0.14), "purple": (0.58, 0.22, 0.72), "orange": (0.97, 0.52, 0.10),
}

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB = os.path.join(HERE, "..", "..", "worker", "engine", "clip", "data",
                     "bpe_simple_vocab_16e6.txt.gz")


class Scene:
    """One shape on a background. Positions and sizes are in output pixels."""

    def __init__(self, shape, colour, cx, cy, radius, background):
        self.shape, self.colour = shape, colour
        self.cx, self.cy, self.radius = cx, cy, radius
        self.background = background  # (r, g, b) in [0, 1]: the photo's wall tone

    def content(self):
        return f"{self.colour} {self.shape}"


def random_scene(rng):
    return scene_from_numbers(rng.integers(len(SHAPES)), rng.integers(len(COLOURS)),
                              rng.uniform(size=4), rng.uniform(size=3))


def scene_from_numbers(shape, colour, u, bg):
    """u: 4 numbers in [0,1] (radius, cx, cy, unused); bg: 3 in [0,1]."""
    radius = 6.0 + 4.0 * u[0]
    margin = radius + 2.0
    cx = margin + (SIZE - 2 * margin) * u[1]
    cy = margin + (SIZE - 2 * margin) * u[2]
    grey = 0.62 + 0.3 * bg[0]
    tint = 0.08 * (np.asarray(bg) - 0.5)
    background = tuple(float(np.clip(grey + t, 0, 1)) for t in tint)
    return Scene(SHAPES[int(shape)], COLOURS[int(colour)], cx, cy, radius, background)


def normal_cdf(x):
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


# The latent map. The generator's z (64 numbers, N(0, I)) decides the scene:
# shape = argmax z[0:4], colour = argmax z[4:10], and radius, position and the
# background through the normal CDF of z[10:17] (uniform in [0, 1]). The rest
# of z is unused. Each class has the same probability. The generator's photos
# keep the shape near the middle (within POSITION_SPREAD of the world's range
# of positions around the centre): a regression learns shape x position far
# more slowly than shape alone (docs/world.md).
LATENT_DIM = 64
POSITION_SPREAD = 0.3


def scene_from_latent(z, spread=POSITION_SPREAD):
    z = np.asarray(z, dtype=np.float64)
    shape = int(np.argmax(z[0:4]))
    colour = int(np.argmax(z[4:10]))
    u = [normal_cdf(v) for v in z[10:14]]
    u[1] = 0.5 + spread * (u[1] - 0.5)
    u[2] = 0.5 + spread * (u[2] - 0.5)
    bg = [normal_cdf(v) for v in z[14:17]]
    return scene_from_numbers(shape, colour, u, bg)


# -- rendering -------------------------------------------------------------

def _grid():
    n = SIZE * SUPERSAMPLE
    c = (np.arange(n) + 0.5) / SUPERSAMPLE
    return np.meshgrid(c, c)  # x, y in output pixels


_X, _Y = _grid()


def signed_distance(scene):
    """Signed distance (output pixels) to the shape's outline: < 0 inside."""
    x, y = _X - scene.cx, _Y - scene.cy
    r = scene.radius
    if scene.shape == "circle":
        return np.hypot(x, y) - r
    if scene.shape == "square":
        h = 0.82 * r
        qx, qy = np.abs(x) - h, np.abs(y) - h
        return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
    if scene.shape == "triangle":
        # Equilateral, pointing up, centroid at the centre.
        k = math.sqrt(3.0)
        s = 1.05 * r
        px, py = np.abs(x) / s, (-y) / s + 0.5
        a = k * px + py - 1.0  # right edge
        b = -py - 0.5          # bottom edge
        return np.maximum(a / 2.0, b) * s
    if scene.shape == "cross":
        w = 0.34 * r
        def box(hx, hy):
            qx, qy = np.abs(x) - hx, np.abs(y) - hy
            return np.hypot(np.maximum(qx, 0), np.maximum(qy, 0)) + np.minimum(np.maximum(qx, qy), 0)
        return np.minimum(box(r, w), box(w, r))
    raise ValueError(scene.shape)


def _coverage(d, softness=0.5):
    return np.clip(0.5 - d / (2 * softness), 0.0, 1.0)


def _downsample(img):
    n = SIZE
    return img.reshape(n, SUPERSAMPLE, n, SUPERSAMPLE, 3).mean(axis=(1, 3))


def _smooth_noise(rng, cells):
    """Value noise on a cells x cells lattice, bilinear at the supersampled grid."""
    g = rng.uniform(size=(cells + 1, cells + 1))
    n = SIZE * SUPERSAMPLE
    t = np.linspace(0, cells, n, endpoint=False)
    i = t.astype(int)
    f = t - i
    f = f * f * (3 - 2 * f)
    a = g[i][:, i] * (1 - f)[None, :] + g[i][:, i + 1] * f[None, :]
    b = g[i + 1][:, i] * (1 - f)[None, :] + g[i + 1][:, i + 1] * f[None, :]
    return a * (1 - f)[:, None] + b * f[:, None]


def render(scene, style, rng=None):
    """The scene in one style: float32 (32, 32, 3) in [0, 1]. `rng` varies the
    style's own texture (paper grain, washes); None uses a fixed one."""
    if rng is None:
        rng = np.random.default_rng(12345)
    d = signed_distance(scene)
    colour = np.array(RGB[scene.colour])
    n = SIZE * SUPERSAMPLE
    if style == "photo":
        bg = np.array(scene.background)
        shade = 1.0 - 0.25 * (_Y / SIZE)
        img = bg[None, None, :] * shade[..., None]
        # A soft shadow below and to the right of the shape.
        sx, sy = scene.cx + 0.18 * scene.radius, scene.cy + 0.28 * scene.radius
        ds = signed_distance(Scene(scene.shape, scene.colour, sx, sy, scene.radius, bg))
        shadow = 0.45 * np.clip(0.5 - ds / 3.0, 0, 1)
        img = img * (1 - shadow[..., None])
        # The shape lit from the upper left, with a highlight.
        lx, ly = scene.cx - 0.45 * scene.radius, scene.cy - 0.45 * scene.radius
        dist = np.hypot(_X - lx, _Y - ly) / (2.0 * scene.radius)
        light = np.clip(1.15 - 0.75 * dist, 0.35, 1.15)
        body = np.clip(colour[None, None, :] * light[..., None], 0, 1)
        spec = np.exp(-(np.hypot(_X - lx, _Y - ly) / (0.3 * scene.radius)) ** 2)[..., None]
        body = body + (1 - body) * 0.55 * spec
        a = _coverage(d)[..., None]
        img = img * (1 - a) + body * a
        return _downsample(img).astype(np.float32)
    if style == "sketch":
        paper = 0.94 + 0.04 * _smooth_noise(rng, 8)
        img = np.repeat(paper[..., None], 3, axis=2) * np.array([1.0, 0.99, 0.96])
        ink = colour * 0.7
        line = np.clip(1.0 - np.abs(d + 0.2) / 0.7, 0, 1)
        # A second, looser stroke a little off the first.
        jitter = 0.6 * (_smooth_noise(rng, 6) - 0.5)
        line2 = 0.6 * np.clip(1.0 - np.abs(d - 0.8 + jitter) / 0.45, 0, 1)
        a = np.clip(line + line2, 0, 1)[..., None]
        img = img * (1 - a) + ink * a
        return _downsample(img).astype(np.float32)
    if style == "pixel art":
        palette_bg = np.array([0.55, 0.78, 0.95]) if scene.background[0] > 0.77 else \
            np.array([0.35, 0.55, 0.35])
        # 2x2-pixel blocks: the scene sampled at each block's centre, a
        # one-block dark outline, flat colours.
        block = 2 * SUPERSAMPLE
        c = np.arange(n) // block * block + block // 2
        dc = d[c][:, c]
        img = np.where((dc < 0.3)[..., None], colour, palette_bg)
        img = np.where(((dc < 0.3) & (dc > -1.2))[..., None], colour * 0.35, img)
        return _downsample(img).astype(np.float32)
    if style == "neon":
        bright = np.clip(colour * 1.25 + 0.15, 0, 1)
        glow = np.exp(-np.abs(d) / 1.6)[..., None]
        core = np.clip(1.0 - np.abs(d) / 0.55, 0, 1)[..., None]
        bg = np.array([0.03, 0.02, 0.08]) + 0.03 * _smooth_noise(rng, 4)[..., None]
        img = bg + bright * 0.9 * glow
        img = img * (1 - core) + (0.6 * bright + 0.4) * core
        return np.clip(_downsample(img), 0, 1).astype(np.float32)
    if style == "watercolor":
        paper = 0.96 + 0.03 * _smooth_noise(rng, 16)
        img = np.repeat(paper[..., None], 3, axis=2) * np.array([1.0, 0.98, 0.93])
        wobble = 1.2 * (_smooth_noise(rng, 5) - 0.5)
        dw = d + wobble
        wash = 0.45 + 0.35 * _smooth_noise(rng, 7)
        a = (_coverage(dw, 1.0) * wash)[..., None]
        rim = (0.35 * np.clip(1.0 - np.abs(dw + 0.6) / 0.8, 0, 1))[..., None]
        pigment = colour * 0.85
        img = img * (1 - a) + pigment * a
        img = img * (1 - rim) + (colour * 0.55) * rim
        return _downsample(img).astype(np.float32)
    raise ValueError(style)


# -- captions --------------------------------------------------------------

# The caption shapes the CLIP of this world learns from. Besides full
# descriptions it sees the style or the content alone, and the style inside the
# templates the method averages over (text_templates.json), so that the texts
# the trainer builds ("a photo of a sketch.", "a bad photo of the neon.") mean
# something to it.
FULL_FORMS = [
    "a {noun} of a {content}",
    "a {noun} of a {content}.",
    "{style} {content}",
    "a {content} , {style}",
    "a {content} in {style} style",
    "a {style} picture of a {content}",
]
CONTENT_FORMS = ["a {content}", "{content}", "a {content}.", "the {content}"]
STYLE_FORMS = ["{style}", "a {noun}", "{style} style", "in {style} style"]


def caption(scene, style, rng, templates):
    """A caption of the scene in `style`, and what it says: (text, style or
    None, content or None); None where the caption does not say."""
    r = rng.uniform()
    noun, content = STYLE_NOUNS[style], scene.content()
    if r < 0.5:
        form = FULL_FORMS[rng.integers(len(FULL_FORMS))]
        return form.format(noun=noun, content=content, style=style), style, content
    if r < 0.75:
        return templates[rng.integers(len(templates))].format(style), style, None
    if r < 0.85:
        form = STYLE_FORMS[rng.integers(len(STYLE_FORMS))]
        return form.format(noun=noun, style=style), style, None
    form = CONTENT_FORMS[rng.integers(len(CONTENT_FORMS))]
    return form.format(content=content), None, content


# -- CLIP's tokenizer (BPE over the vocabulary the engine ships) -------------

def _bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class Tokenizer:
    """CLIP's byte-level BPE for plain ASCII text (what the captions use);
    the engine's C++ tokenizer is the full one, and a test checks both agree on
    every word the world's captions use."""

    SOT, EOT = 49406, 49407
    _PATTERN = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")

    def __init__(self, path=VOCAB):
        merges = gzip.open(path).read().decode("utf-8").split("\n")[1:49152 - 256 - 2 + 1]
        merges = [tuple(m.split()) for m in merges]
        vocab = list(_bytes_to_unicode().values())
        vocab = vocab + [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.byte_encoder = _bytes_to_unicode()
        self.cache = {}

    def _bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            out, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        self.cache[token] = word
        return word

    def encode(self, text):
        if not text.isascii():
            raise ValueError(f"the world's tokenizer reads ASCII only: {text!r}")
        text = re.sub(r"\s+", " ", text).strip().lower()
        ids = []
        for tok in self._PATTERN.findall(text):
            tok = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            ids.extend(self.encoder[p] for p in self._bpe(tok))
        return ids

    def tokens(self, texts, length=77):
        out = np.zeros((len(texts), length), dtype=np.int64)
        for i, t in enumerate(texts):
            ids = [self.SOT] + self.encode(t) + [self.EOT]
            if len(ids) > length:
                raise ValueError(f"too long for CLIP: {t!r}")
            out[i, :len(ids)] = ids
        return out


# -- pictures ----------------------------------------------------------------

def grid(images, cols, pad=1, scale=1):
    """Images (N, H, W, 3) in [0, 1] -> one (rows*(H+pad)+pad, ...) picture on white."""
    images = np.asarray(images)
    if scale > 1:
        images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    out = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.float32)
    for i in range(n):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = images[i]
    return out


def write_png(path, image):
    """An (H, W, 3) float image in [0, 1] as an 8-bit RGB PNG."""
    import struct
    import zlib
    data = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
    h, w, _ = data.shape
    raw = b"".join(b"\x00" + data[y].tobytes() for y in range(h))

    def chunk(kind, payload):
        body = kind + payload
        return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 6)))
        f.write(chunk(b"IEND", b""))


def load_templates():
    import json
    path = os.path.join(HERE, "..", "..", "worker", "engine", "adapt", "data", "text_templates.json")
    with open(path) as f:
        return json.load(f)["imagenet_templates"]


def read_png(path):
    """An 8-bit RGB or RGBA PNG (not interlaced) as (H, W, 3) float32 in [0, 1]."""
    import struct
    import zlib
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat = 8, b""
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or ctype not in (2, 6) or interlace:
                raise ValueError(f"{path}: only 8-bit RGB/RGBA, not interlaced")
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(idat)
    stride = w * bpp
    out = np.zeros((h, stride), dtype=np.int32)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(h):
        ftype = raw[y * (stride + 1)]
        line = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        cur = np.zeros(stride, dtype=np.int32)
        for x in range(stride):
            a = cur[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
            cur[x] = (line[x] + pred) & 0xFF
        out[y] = cur
        prev = cur
    return (out.reshape(h, w, bpp)[:, :, :3] / 255.0).astype(np.float32)
