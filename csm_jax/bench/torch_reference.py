"""An eager PyTorch frame loop of the released CSM's structure, for the bench.

The speed target at debug dims is relative to the way the released CSM
generates: eager PyTorch, one backbone step over a KV cache, then N-1
depth-decoder steps over a fresh decoder cache, each sampling a codebook
with top-k and embedding it for the next step. ``frame_loop`` builds that
loop with random weights at a config's dims (a frame's time depends on the
shapes, not on the values) as a callable that decodes one repeat of
``frames`` frames after a prompt, which ``generate_bench`` times in
alternation with ours; ``time_frames`` times it alone. It needs torch (the
``interop`` extra).

Two stacks run the same loop: ``lean`` (a minimal Llama block written here:
preallocated caches, one fused projection each) and, where torchtune is
installed, ``torchtune`` (its ``llama3_2`` decoder with its KV caches,
position ids and per-step masks, which is what the released CSM runs).
"""

from __future__ import annotations

import importlib.util

from csm_jax.parallel.hardware import timed


def _importable(name: str) -> bool:
  return importlib.util.find_spec(name) is not None


def available() -> bool:
  return _importable("torch")


def torchtune_available() -> bool:
  return _importable("torchtune")


def _stack(torch, dims, max_len: int):
  """A Llama-style stack (RMSNorm, GQA with RoPE, SwiGLU) with a KV cache."""
  nn, F = torch.nn, torch.nn.functional
  width, depth, heads, kv_heads, mlp = (dims.width, dims.depth, dims.heads,
                                        dims.kv_heads, dims.mlp)
  hd = dims.head_dim or width // heads
  inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
  ang = torch.arange(max_len).float()[:, None] * inv[None]
  cos, sin = ang.cos(), ang.sin()

  def rope(x, pos):            # x: (1, h, t, hd)
    c, s = cos[pos:pos + x.shape[2]], sin[pos:pos + x.shape[2]]
    a, b = x[..., ::2], x[..., 1::2]
    return torch.stack([a * c - b * s, a * s + b * c], -1).flatten(-2)

  class Block(nn.Module):

    def __init__(self):
      super().__init__()
      self.n1, self.n2 = nn.RMSNorm(width), nn.RMSNorm(width)
      self.q = nn.Linear(width, heads * hd, bias=False)
      self.kv = nn.Linear(width, 2 * kv_heads * hd, bias=False)
      self.o = nn.Linear(heads * hd, width, bias=False)
      self.gate_up = nn.Linear(width, 2 * mlp, bias=False)
      self.down = nn.Linear(mlp, width, bias=False)
      self.k_cache = torch.zeros(1, kv_heads, max_len, hd)
      self.v_cache = torch.zeros(1, kv_heads, max_len, hd)

    def forward(self, x, pos):
      t = x.shape[1]
      h = self.n1(x)
      q = self.q(h).view(1, t, heads, hd).transpose(1, 2)
      k, v = self.kv(h).view(1, t, 2, kv_heads, hd).permute(2, 0, 3, 1, 4)
      q, k = rope(q, pos), rope(k, pos)
      self.k_cache[:, :, pos:pos + t] = k
      self.v_cache[:, :, pos:pos + t] = v
      rep = heads // kv_heads
      keys = self.k_cache[:, :, :pos + t].repeat_interleave(rep, 1)
      vals = self.v_cache[:, :, :pos + t].repeat_interleave(rep, 1)
      mask = (torch.arange(pos + t)[None] <= torch.arange(pos, pos + t)[:, None])
      a = F.scaled_dot_product_attention(q, keys, vals, attn_mask=mask)
      x = x + self.o(a.transpose(1, 2).reshape(1, t, width))
      g, u = self.gate_up(self.n2(x)).chunk(2, -1)
      return x + self.down(F.silu(g) * u)

  class Stack(nn.Module):

    def __init__(self):
      super().__init__()
      self.blocks = nn.ModuleList([Block() for _ in range(depth)])
      self.norm = nn.RMSNorm(width)

    def forward(self, x, pos):
      for b in self.blocks:
        x = b(x, pos)
      return self.norm(x)

  return Stack()


def _torchtune_stack(torch, dims, max_len: int):
  """torchtune's llama3_2 over embeddings, called as ``stack(x, pos)``."""
  from torchtune.models import llama3_2  # pylint: disable=g-import-not-at-top
  model = llama3_2.llama3_2(
      vocab_size=8, num_layers=dims.depth, num_heads=dims.heads,
      num_kv_heads=dims.kv_heads, embed_dim=dims.width, max_seq_len=max_len,
      intermediate_dim=dims.mlp, attn_dropout=0.0, norm_eps=1e-5)
  model.tok_embeddings = torch.nn.Identity()
  model.output = torch.nn.Identity()
  model.setup_caches(1, torch.float32, decoder_max_seq_len=max_len)
  causal = torch.tril(torch.ones(max_len, max_len, dtype=torch.bool))

  def step(x, pos):
    if pos == 0:
      model.reset_caches()
    t = x.shape[1]
    return model(x, input_pos=torch.arange(pos, pos + t)[None],
                 mask=causal[None, pos:pos + t])
  return step


def frame_loop(model_config, frames: int = 64, prompt_rows: int = 32,
               repeats: int = 5, top_k: int = 50, seed: int = 0,
               max_len: int | None = None, stack: str = "lean"):
  """The eager loop, built and warmed up: a callable that decodes one
  repeat of ``frames`` frames (or as many as it is given) from the same
  position (as the JAX bench's repeats do), to time against ours
  (``hardware.timed_paired``).

  ``max_len``: the backbone cache's rows (default: the prompt, the warm-up,
  ``repeats`` repeats' frames and a few to spare)."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  m = model_config
  n, vocab = m.n_codebooks, m.audio_vocab
  wb, wd = m.backbone.width, m.decoder.width
  max_len = max_len or prompt_rows + 3 + frames * repeats + 8
  if stack == "torchtune":
    backbone = _torchtune_stack(torch, m.backbone, max_len)
    decoder = _torchtune_stack(torch, m.decoder, n + 1)
  else:
    backbone = _stack(torch, m.backbone, max_len).eval()
    decoder = _stack(torch, m.decoder, n + 1).eval()
  audio_embed = torch.nn.Embedding(n * vocab, wb)
  text_embed = torch.nn.Embedding(m.text_vocab, wb)
  head0 = torch.nn.Linear(wb, vocab, bias=False)
  projection = torch.nn.Linear(wb, wd, bias=False)
  heads = torch.randn(n - 1, wd, vocab) * wd ** -0.5
  offsets = torch.arange(n) * vocab

  def sample(logits):
    logits = logits / 0.9
    v, i = torch.topk(logits, top_k, -1)
    return i.gather(-1, torch.multinomial(v.softmax(-1), 1))

  state = {"pos": 0}

  @torch.inference_mode()
  def frame(row):
    h = backbone(row, state["pos"])[:, -1:]
    state["pos"] += row.shape[1]
    code = sample(head0(h[:, 0]))
    codes = [code]
    x = torch.cat([projection(h), projection(audio_embed(code))], 1)
    out = decoder(x, 0)
    for i in range(1, n):
      code = sample(out[:, -1] @ heads[i - 1])
      codes.append(code)
      out = decoder(projection(audio_embed(code + offsets[i])), i + 1)
    return audio_embed(torch.cat(codes, -1) + offsets).sum(1, keepdim=True)

  with torch.inference_mode():
    prompt = text_embed(torch.randint(0, m.text_vocab, (1, prompt_rows)))
    state["row"] = frame(prompt)
  for _ in range(2):                     # warm-up
    state["row"] = frame(state["row"])
  # Every repeat decodes from the same position, as the JAX bench's do: the
  # lean block attends over the filled rows only, so a cache that kept
  # growing would make later repeats slower. torchtune's attends over its
  # whole cache at any position (and cannot rewind), so it just goes on.
  start = state["pos"]

  def repeat(n_frames: int = frames):
    if stack == "lean":
      state["pos"] = start
    for _ in range(n_frames):
      state["row"] = frame(state["row"])

  return repeat


def time_frames(model_config, frames: int = 64, prompt_rows: int = 32,
                repeats: int = 5, top_k: int = 50, seed: int = 0,
                max_len: int | None = None, stack: str = "lean") -> dict:
  """Median seconds per frame of the eager loop (``frame_loop``), timed
  alone, with its spread."""
  import torch  # pylint: disable=g-import-not-at-top
  repeat = frame_loop(model_config, frames, prompt_rows, repeats, top_k, seed,
                      max_len, stack)
  t = timed(repeat, repeats=repeats, warmup=0)
  return {"frame_s": t.median / frames, "spread": t.spread,
          "repeats": repeats, "frames_per_repeat": frames,
          "threads": torch.get_num_threads()}
