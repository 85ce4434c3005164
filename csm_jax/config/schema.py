"""The one config schema, its presets, and validation that names the bad field.

Every config file in ``configs/`` is ``get_config(arg)`` returning
``make_config(size, ...)``. The returned ConfigDict is locked, so a misspelt
command-line override (``--config.train.stepz=3``) fails at parse time with the
key's name; ``validate`` then checks the values before anything is compiled.
"""

from __future__ import annotations

import math
import re
from typing import Any

import ml_collections

from csm_jax.config import lora as lora_lib
from csm_jax.config import memory as memory_lib
from csm_jax.config import prosody as prosody_lib
from csm_jax.config import sizes as sizes_lib
from csm_jax.config import text_stream as text_stream_lib
from csm_jax.config.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "save_attn_out")
ROPE_SCALINGS = ("none", "llama3")
# The evaluation instruments (csm_jax.eval.instruments) train on the same
# trainer; their network lives in an ``instrument`` section of their config.
INSTRUMENT_TASKS = ("recognizer", "speaker_encoder", "emotion_classifier")
TASKS = ("csm", "codec", "probe", *INSTRUMENT_TASKS)
DATA_SOURCES = ("synthetic_tokens", "dialogues")
ATTENTION_IMPLS = ("auto", "xla", "cudnn")
TOKENIZER_TYPES = ("unigram", "bpe", "char", "phoneme")


class ConfigError(UserError, ValueError):
  """A config value is invalid; the message starts with the field's path."""

  def __init__(self, field: str, message: str | None = None):
    if message is None:
      # ml_collections re-raises an error of a config file as
      # ``type(e)("Error whilst parsing config file: <traceback>")``; the
      # field and message are the traceback's last ConfigError line.
      found = re.findall(r"ConfigError: config\.(\S+?): (.*)$", field, re.M)
      field, message = found[-1] if found else ("?", field.strip())
    super().__init__(f"config.{field}: {message}")
    self.field = field


def _transformer(shape) -> ml_collections.ConfigDict:
  width, depth, heads, kv_heads, mlp = shape
  return ml_collections.ConfigDict(dict(
      width=width, depth=depth, heads=heads, kv_heads=kv_heads, mlp=mlp,
      head_dim=0,  # 0: width // heads
  ))


def make_config(size: str = "debug", task: str = "csm") -> ml_collections.ConfigDict:
  """The full default config for one row of the size table."""
  if size not in sizes_lib.SIZES:
    raise ConfigError("size", f"unknown size {size!r}; known: {sizes_lib.names()}")
  row = sizes_lib.SIZES[size]
  c = ml_collections.ConfigDict()
  c.task = task
  c.size = size

  m = c.model = ml_collections.ConfigDict()
  m.text_vocab = row["text_vocab"]
  m.n_codebooks = row["n_codebooks"]
  m.codebook_size = row["codebook_size"]
  m.audio_vocab = row["codebook_size"] + sizes_lib.AUDIO_SPECIAL_TOKENS
  m.backbone = _transformer(row["backbone"])
  m.decoder = _transformer(row["decoder"])
  m.max_seq_len = 2048
  m.rope_theta = 500_000.0
  m.rope_scaling = "llama3"
  m.rope_factor = 32.0
  m.rope_low_freq_factor = 1.0
  m.rope_high_freq_factor = 4.0
  m.rope_original_max_len = 8192
  m.norm_eps = 1e-5
  # Asymmetric attention (research plan): text looks locally, audio globally.
  m.text_window = row.get("text_window", 256)
  m.audio_window = 2048
  # Compute amortization: the depth decoder trains on this share of frames.
  m.decoder_frame_fraction = 1.0 / 16
  # Hierarchical codebooks (research plan 2.3): codebooks below
  # critical_codebooks train every step; of the detail codebooks above,
  # detail_codebooks_per_step are drawn each step. 0 trains all, always.
  m.critical_codebooks = 0
  m.detail_codebooks_per_step = 0
  m.text_loss_weight = 0.0
  # Adaptive quality (research plan: trade fidelity for latency): the share
  # of training examples whose input frames keep only a random prefix of
  # their levels, as generation with --levels=k feeds them back. 0: off.
  m.level_dropout = 0.0
  m.dtype = "float32"
  m.param_dtype = "float32"
  m.remat = "none"
  m.scan_layers = True
  m.attention_impl = "auto"
  # Hooks for conditioning streams (memory, prosody, plans); 0 disables.
  m.cond_dim = 0
  m.n_prefix = 0
  m.init_std = 0.02
  # Two-stage generation's prosody stream (config/prosody.py); off: plain CSM.
  m.prosody = prosody_lib.prosody_config()
  # The dual conversational memory (config/memory.py); off: plain CSM.
  m.memory = memory_lib.memory_config()
  # Where the text goes (config/text_stream.py); prefix: CSM's layout.
  text_stream_lib.add_fields(m)

  # The codec whose codes the CSM predicts (and which task=codec trains).
  from csm_jax.config.codec import codec_config  # pylint: disable=g-import-not-at-top
  c.codec = codec_config(row["codec"])
  if row["codec"] == "debug":
    # 25 Hz frames: half the debug codec's 50 Hz, so a CPU-sized sequence
    # of 512 rows still holds a few turns of context.
    c.codec.downsample = 4

  d = c.data = ml_collections.ConfigDict()
  d.source = "dialogues"
  # Dialogue corpus (tfds) and what the CSM examples are made of.
  d.corpus = "synthetic_dialogues"
  d.corpus_size = "default"
  d.data_dir = ""  # "": $CSM_JAX_DATA_DIR or ~/csm_jax_data
  d.codec_dir = ""  # a trained codec; "": train one into <workdir>/codec
  d.codec_steps = 2000  # steps of that automatic codec training
  d.tokenizer = ""  # a sentencepiece model; "": train one into the workdir
  # The algorithm of that tokenizer: unigram or bpe pieces, single
  # characters (a small vocabulary every symbol of which is seen often), or
  # eSpeak NG's phonemes (data.phoneme_tokenizer).
  d.tokenizer_type = "unigram"
  d.context_turns = 5
  d.loss_on = "target"  # or "all_audio"
  # Short turns first: the first ``curriculum_steps`` steps draw only
  # targets of at most ``curriculum_max_seconds`` (dialogues; 0: off).
  d.curriculum_steps = 0
  d.curriculum_max_seconds = 3.0
  d.seq_len = row["seq_len"]
  d.batch_size = row["batch_size"]  # global, across all processes
  d.seed = 0
  d.num_examples = 4096  # synthetic_tokens only
  d.eval_examples = 64
  d.worker_threads = 2
  d.prefetch = 4

  t = c.train = ml_collections.ConfigDict()
  t.steps = 1000
  t.lr = 3e-4
  t.min_lr_ratio = 0.1
  t.warmup_steps = 100
  t.weight_decay = 0.1
  t.b1 = 0.9
  t.b2 = 0.95
  t.eps = 1e-8
  t.grad_clip = 1.0
  t.accum_steps = 1
  t.seed = 0
  t.log_every = 10
  t.eval_every = 200
  t.eval_steps = 4
  t.ckpt_every = 200
  t.keep_checkpoints = 3
  t.async_checkpoint = True
  # Resume a checkpoint written by another number of processes: model and
  # optimizer exactly, data order restarted (see store.checkpoint).
  t.elastic_resume = False
  # Fine-tuning: start from the weights of an export or workdir (e.g. a
  # converted CSM-1B, docs/interop.md) instead of a random initialization.
  t.init_from = ""
  # LoRA (train.lora.rank > 0): only low-rank adapters of the projections
  # that ``targets`` names (config.lora) are trained; the other weights are
  # frozen. Adapters scale by alpha / rank.
  t.lora = ml_collections.ConfigDict(dict(rank=0, alpha=32.0,
                                          targets="attn,mlp"))

  mesh = c.mesh = ml_collections.ConfigDict()
  dm = row["default_mesh"]
  mesh.data, mesh.fsdp, mesh.tensor = dm  # -1: all remaining devices
  c.topology = row["topology"] or ""
  c.lock()
  return c


# --------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------


def _check(cond: bool, field: str, message: str) -> None:
  if not cond:
    raise ConfigError(field, message)


def _validate_transformer(c, name: str) -> None:
  t = c.model[name]
  for key in ("width", "depth", "heads", "kv_heads", "mlp"):
    _check(t[key] > 0, f"model.{name}.{key}", f"must be positive, got {t[key]}")
  if t.head_dim == 0:
    _check(t.width % t.heads == 0, f"model.{name}.heads",
           f"{t.heads} heads do not divide width {t.width}")
  _check(t.heads % t.kv_heads == 0, f"model.{name}.kv_heads",
         f"{t.kv_heads} kv heads do not divide {t.heads} query heads")


def resolve_mesh_shape(c, n_devices: int) -> tuple[int, int, int]:
  """Fills a -1 mesh axis with the remaining devices; checks the product."""
  axes = {"data": c.mesh.data, "fsdp": c.mesh.fsdp, "tensor": c.mesh.tensor}
  auto = [k for k, v in axes.items() if v == -1]
  _check(len(auto) <= 1, "mesh", f"at most one axis may be -1, got {auto}")
  for k, v in axes.items():
    _check(v == -1 or v >= 1, f"mesh.{k}", f"must be -1 or >= 1, got {v}")
  fixed = math.prod(v for v in axes.values() if v != -1)
  if auto:
    _check(n_devices % fixed == 0, f"mesh.{auto[0]}",
           f"the other axes ({fixed} devices) do not divide the "
           f"{n_devices} available devices")
    axes[auto[0]] = n_devices // fixed
  total = math.prod(axes.values())
  _check(total == n_devices, "mesh",
         f"data*fsdp*tensor = {axes['data']}*{axes['fsdp']}*{axes['tensor']} "
         f"= {total} but {n_devices} devices are available")
  return axes["data"], axes["fsdp"], axes["tensor"]


def _check_types(c, ref, prefix: str) -> None:
  for key, want in ref.items():
    if key not in c:
      continue
    got, field = c[key], f"{prefix}{key}"
    if isinstance(want, ml_collections.ConfigDict):
      _check(isinstance(got, ml_collections.ConfigDict), field,
             f"must be a section, got {got!r}")
      _check_types(got, want, field + ".")
    elif isinstance(want, bool):
      _check(isinstance(got, bool), field, f"must be true or false, got {got!r}")
    elif isinstance(want, (int, float, str)):
      kinds = (int, float) if isinstance(want, float) else (type(want),)
      _check(isinstance(got, kinds) and not isinstance(got, bool), field,
             f"must be {'a number' if isinstance(want, float) else type(want).__name__}, "
             f"got {got!r}")


def check_types(c) -> None:
  """The task is known and each field the schema defines holds a value of
  its type (a config read back from JSON is not type-checked by
  ml_collections): raises ConfigError naming the field, before anything is
  built from it."""
  _check(c.get("task") in TASKS, "task",
         f"unknown task {c.get('task')!r}; known: {TASKS}")
  size = c.get("size")
  ref = make_config(size if size in sizes_lib.SIZES else "debug", c.task)
  _check_types(c, ref, "")


def validate(c, n_devices: int | None = None, n_processes: int = 1) -> None:
  """Checks values and their relations; raises ConfigError naming the field."""
  _check(c.task in TASKS, "task", f"unknown task {c.task!r}; known: {TASKS}")
  m = c.model
  _check(m.dtype in DTYPES, "model.dtype", f"{m.dtype!r} not in {DTYPES}")
  _check(m.param_dtype in DTYPES, "model.param_dtype",
         f"{m.param_dtype!r} not in {DTYPES}")
  _check(m.remat in REMAT_POLICIES, "model.remat",
         f"{m.remat!r} not in {REMAT_POLICIES}")
  _check(m.rope_scaling in ROPE_SCALINGS, "model.rope_scaling",
         f"{m.rope_scaling!r} not in {ROPE_SCALINGS}")
  _check(m.attention_impl in ATTENTION_IMPLS, "model.attention_impl",
         f"{m.attention_impl!r} not in {ATTENTION_IMPLS}")
  if c.task == "csm":
    _validate_transformer(c, "backbone")
    _validate_transformer(c, "decoder")
    _check(m.n_codebooks >= 2, "model.n_codebooks",
           f"needs at least 2 (codebook 0 + the decoder's), got {m.n_codebooks}")
    _check(m.audio_vocab > m.codebook_size, "model.audio_vocab",
           f"must exceed codebook_size {m.codebook_size} (special ids)")
    _check(0.0 < m.decoder_frame_fraction <= 1.0, "model.decoder_frame_fraction",
           f"must be in (0, 1], got {m.decoder_frame_fraction}")
    if m.critical_codebooks:
      _check(1 <= m.critical_codebooks < m.n_codebooks,
             "model.critical_codebooks",
             f"must be in [1, n_codebooks={m.n_codebooks}) or 0 (off), got "
             f"{m.critical_codebooks}")
      detail = m.n_codebooks - m.critical_codebooks
      _check(1 <= m.detail_codebooks_per_step <= detail,
             "model.detail_codebooks_per_step",
             f"must be in [1, {detail}] (the detail codebooks) when "
             f"critical_codebooks is set, got {m.detail_codebooks_per_step}")
    _check(0.0 <= m.level_dropout <= 1.0, "model.level_dropout",
           f"is a probability, got {m.level_dropout}")
    _check(m.text_window >= 1, "model.text_window", "must be >= 1")
    _check(m.audio_window >= 1, "model.audio_window", "must be >= 1")
    _check(m.cond_dim >= 0, "model.cond_dim", "must be >= 0")
    _check(m.n_prefix >= 0, "model.n_prefix", "must be >= 0")
    if memory_lib.enabled(m):
      memory_lib.validate(c, _check)
    memory_lib.check_weights(c, _check)
    if prosody_lib.enabled(m):
      prosody_lib.validate(m.prosody, _check)
      _check(c.data.source == "dialogues", "model.prosody.enabled",
             "the prosody stream reads F0 and energy from turn audio; "
             f"data.source={c.data.source!r} has none (use dialogues)")
    _check(c.data.seq_len >= 2, "data.seq_len", "must be >= 2")
    _check(c.data.seq_len + m.n_prefix <= m.max_seq_len, "data.seq_len",
           f"{c.data.seq_len} (+{m.n_prefix} prefix) exceeds "
           f"model.max_seq_len {m.max_seq_len}")
    _check(c.data.source in DATA_SOURCES, "data.source",
           f"unknown source {c.data.source!r}; known: {DATA_SOURCES}")
    _check(c.data.loss_on in ("target", "all_audio"), "data.loss_on",
           f"must be 'target' or 'all_audio', got {c.data.loss_on!r}")
    _check(c.data.get("curriculum_steps", 0) >= 0, "data.curriculum_steps",
           f"must be >= 0 (0: off), got {c.data.get('curriculum_steps')}")
    _check(c.data.get("curriculum_max_seconds", 3.0) > 0,
           "data.curriculum_max_seconds",
           f"must be positive, got {c.data.get('curriculum_max_seconds')}")
    _check(not c.data.get("curriculum_steps", 0) or (
        c.data.source == "dialogues" and not memory_lib.enabled(m)),
           "data.curriculum_steps", "the curriculum orders dialogue turns by "
           "length; it needs data.source='dialogues' and the memory off")
    _check(c.data.context_turns >= 0, "data.context_turns", "must be >= 0")
    _check(c.data.tokenizer_type in TOKENIZER_TYPES, "data.tokenizer_type",
           f"{c.data.tokenizer_type!r} not in {TOKENIZER_TYPES}")
    text_stream_lib.validate(c, _check)
    if c.data.source == "dialogues":
      q = c.codec.rvq
      _check(m.n_codebooks <= q.levels, "model.n_codebooks",
             f"{m.n_codebooks} codebooks but the codec has {q.levels} levels")
      _check(m.codebook_size == q.codebook_size, "model.codebook_size",
             f"{m.codebook_size} but the codec's codebooks hold "
             f"{q.codebook_size} codes")
  t = c.train
  _check(t.steps >= 1, "train.steps", f"must be >= 1, got {t.steps}")
  _check(t.lr > 0, "train.lr", f"must be positive, got {t.lr}")
  _check(0 <= t.warmup_steps, "train.warmup_steps", "must be >= 0")
  _check(0.0 <= t.min_lr_ratio <= 1.0, "train.min_lr_ratio", "must be in [0, 1]")
  _check(t.accum_steps >= 1, "train.accum_steps", "must be >= 1")
  _check(t.grad_clip >= 0, "train.grad_clip", "must be >= 0 (0 disables)")
  for key in ("log_every", "eval_every", "ckpt_every", "keep_checkpoints"):
    _check(t[key] >= 1, f"train.{key}", f"must be >= 1, got {t[key]}")
  _check(t.lora.rank >= 0, "train.lora.rank", "must be >= 0 (0: no LoRA)")
  if t.lora.rank:
    _check(c.task == "csm", "train.lora.rank",
           f"LoRA adapts the CSM's projections; task {c.task!r} has none")
    _check(t.lora.alpha > 0, "train.lora.alpha",
           f"must be positive, got {t.lora.alpha}")
    try:
      lora_lib.resolve_targets(t.lora.targets)
    except lora_lib.LoraTargetError as e:
      raise ConfigError("train.lora.targets", str(e)) from None
  _check(c.data.batch_size >= 1, "data.batch_size", "must be >= 1")
  _check(c.data.batch_size % t.accum_steps == 0, "train.accum_steps",
         f"{t.accum_steps} does not divide data.batch_size {c.data.batch_size}")
  _check(c.data.batch_size % n_processes == 0, "data.batch_size",
         f"{c.data.batch_size} is not divisible by {n_processes} processes")
  if n_devices is not None:
    data, fsdp, tensor = resolve_mesh_shape(c, n_devices)
    micro = c.data.batch_size // t.accum_steps
    _check(micro % (data * fsdp) == 0, "data.batch_size",
           f"the micro-batch {micro} (batch_size / accum_steps) is not "
           f"divisible by the data*fsdp mesh size {data * fsdp}")
    if c.task == "csm":
      for name in ("backbone", "decoder"):
        kv = m[name].kv_heads
        _check(kv % tensor == 0 or tensor % kv == 0, f"model.{name}.kv_heads",
               f"{kv} kv heads cannot be split over tensor={tensor}")


# Model fields that change how a run trains or computes but not what its
# checkpoint holds: a run may resume with other values.
TRAINING_ONLY_MODEL_FIELDS = (
    "decoder_frame_fraction", "critical_codebooks", "detail_codebooks_per_step",
    "level_dropout",
    "remat", "scan_layers", "attention_impl", "dtype", "init_std")


def structural_fields(c) -> dict[str, Any]:
  """The part of a config a checkpoint depends on (shapes, vocab, task)."""
  if c.task == "codec":
    from csm_jax.config import codec as codec_lib  # pylint: disable=g-import-not-at-top
    return {"task": c.task, "codec": codec_lib.structural_dict(c.codec)}
  if c.task in INSTRUMENT_TASKS:
    return {"task": c.task, "instrument": c.instrument.net.to_dict()}
  model = {k: v for k, v in c.model.to_dict().items()
           if k not in TRAINING_ONLY_MODEL_FIELDS}
  # Recorded only when on, so runs from before the stream compare equal.
  model.pop("prosody", None)
  model.pop("memory", None)
  for key in text_stream_lib.FIELDS:
    model.pop(key, None)
  model.update(text_stream_lib.structural(c.model))
  if memory_lib.enabled(c.model):
    model["memory"] = memory_lib.structural_dict(c.model.memory)
  if prosody_lib.enabled(c.model):
    model["prosody"] = prosody_lib.structural_dict(c.model.prosody)
  out = {"task": c.task, "model": model}
  lora = c.train.get("lora")
  if lora is not None and lora.rank:
    # Adapters are part of the checkpoint; without LoRA nothing is recorded,
    # so runs from before the option compare equal.
    out["lora"] = {"rank": lora.rank, "alpha": lora.alpha,
                   "targets": list(lora_lib.resolve_targets(lora.targets))}
  return out
