"""Tiny transformers model directories that tests build offline, in seconds.

Each is saved with ``save_pretrained`` the way a user's downloaded model
would be, with a tokenizer or processor written here (no hub). The Whisper
model's weights are set so that it says ``WHISPER_SAYS`` whatever it hears,
and the CTC model's so that every frame is ``CTC_LETTER``: what the loading
code returns is then known in advance.
"""

import json
import os

import numpy as np

WHISPER_SAYS = "Hello, World!"
CTC_LETTER = "A"
_SPECIALS = ("<|endoftext|>", "<|startoftranscript|>", "<|en|>",
             "<|transcribe|>", "<|notimestamps|>")


def _byte_symbols():
  """GPT-2's printable stand-ins for the 256 bytes (byte-level BPE)."""
  kept = (list(range(ord("!"), ord("~") + 1)) + list(range(161, 173))
          + list(range(174, 256)))
  moved = [b for b in range(256) if b not in kept]
  table = {b: chr(b) for b in kept}
  table.update({b: chr(256 + i) for i, b in enumerate(moved)})
  return table


def whisper_dir(path, says=WHISPER_SAYS):
  """A 1-layer Whisper whose vocabulary is the characters of ``says``; its
  decoder ignores the audio and spells ``says`` from its positions."""
  import torch
  from transformers import (WhisperConfig, WhisperFeatureExtractor,
                            WhisperForConditionalGeneration, WhisperProcessor,
                            WhisperTokenizer)
  os.makedirs(path, exist_ok=True)
  symbols = _byte_symbols()
  pieces = [symbols[b] for b in says.encode("utf-8")]
  vocab = {s: i for i, s in enumerate(sorted(set(pieces)))}
  with open(os.path.join(path, "vocab.json"), "w") as f:
    json.dump(vocab, f)
  with open(os.path.join(path, "merges.txt"), "w") as f:
    f.write("#version: 0.2\n")
  eos = _SPECIALS[0]
  tok = WhisperTokenizer(os.path.join(path, "vocab.json"),
                         os.path.join(path, "merges.txt"), unk_token=eos,
                         bos_token=eos, eos_token=eos, pad_token=eos)
  tok.add_special_tokens({"additional_special_tokens": list(_SPECIALS[1:])})
  ids = tok.convert_tokens_to_ids(list(_SPECIALS))
  width = 2 * (len(tok) // 2 + 2)   # even: the encoder's sinusoids
  config = WhisperConfig(
      vocab_size=len(tok), d_model=width, encoder_layers=1, decoder_layers=1,
      encoder_attention_heads=1, decoder_attention_heads=1,
      encoder_ffn_dim=8, decoder_ffn_dim=8, num_mel_bins=80,
      max_source_positions=1500, max_target_positions=len(pieces) + 12,
      pad_token_id=ids[0], bos_token_id=ids[0], eos_token_id=ids[0],
      decoder_start_token_id=ids[1], suppress_tokens=[],
      begin_suppress_tokens=[])
  model = WhisperForConditionalGeneration(config)
  with torch.no_grad():
    dec = model.model.decoder
    for p in dec.layers.parameters():
      p.zero_()                 # the layers add nothing to the residual
    dec.layer_norm.weight.fill_(1.0)
    dec.layer_norm.bias.zero_()
    # Token i embeds as the unit vector i (the output layer is tied to it);
    # position t adds a large unit vector at the token due after it.
    emb = torch.zeros(len(tok), width)
    emb[torch.arange(len(tok)), torch.arange(len(tok))] = 1.0
    dec.embed_tokens.weight.copy_(emb)
    due = [vocab[p] for p in pieces] + [ids[0]]
    pos = torch.zeros_like(dec.embed_positions.weight)
    for t, i in enumerate(due):
      pos[t, i] = 8.0
    pos[len(due):, ids[0]] = 8.0
    dec.embed_positions.weight.copy_(pos)
  model.generation_config.forced_decoder_ids = None
  model.save_pretrained(path)
  WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80),
                   tokenizer=tok).save_pretrained(path)
  return path


def ctc_dir(path, letter=CTC_LETTER):
  """A 1-layer wav2vec 2.0 CTC model whose every frame is ``letter``."""
  import torch
  from transformers import (Wav2Vec2Config, Wav2Vec2CTCTokenizer,
                            Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC,
                            Wav2Vec2Processor)
  os.makedirs(path, exist_ok=True)
  letters = ["<pad>", "<unk>", "|"] + [chr(c) for c in range(65, 91)] + ["'"]
  vocab = {s: i for i, s in enumerate(letters)}
  with open(os.path.join(path, "vocab.json"), "w") as f:
    json.dump(vocab, f)
  tok = Wav2Vec2CTCTokenizer(os.path.join(path, "vocab.json"))
  config = Wav2Vec2Config(
      vocab_size=len(vocab), hidden_size=8, num_hidden_layers=1,
      num_attention_heads=1, intermediate_size=8, conv_dim=(8, 8),
      conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=4,
      num_conv_pos_embedding_groups=1, pad_token_id=0,
      do_stable_layer_norm=False, feat_extract_norm="group")
  model = Wav2Vec2ForCTC(config)
  with torch.no_grad():
    model.lm_head.weight.zero_()
    model.lm_head.bias.zero_()
    model.lm_head.bias[vocab[letter]] = 5.0
  model.save_pretrained(path)
  Wav2Vec2Processor(feature_extractor=Wav2Vec2FeatureExtractor(
      sampling_rate=16000, return_attention_mask=False),
                    tokenizer=tok).save_pretrained(path)
  return path


def xvector_dir(path):
  """A 1-layer WavLM x-vector speaker model with random weights."""
  import torch
  from transformers import WavLMConfig, WavLMForXVector, \
      Wav2Vec2FeatureExtractor
  os.makedirs(path, exist_ok=True)
  torch.manual_seed(0)
  config = WavLMConfig(
      hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
      intermediate_size=8, conv_dim=(8, 8), conv_stride=(5, 4),
      conv_kernel=(10, 4), num_conv_pos_embeddings=4,
      num_conv_pos_embedding_groups=1, num_buckets=8, max_bucket_distance=16,
      tdnn_dim=(8, 8), tdnn_kernel=(3, 1), tdnn_dilation=(1, 1),
      xvector_output_dim=6)
  WavLMForXVector(config).save_pretrained(path)
  Wav2Vec2FeatureExtractor(sampling_rate=16000).save_pretrained(path)
  return path


def tone(seconds, rate, freq=220.0):
  t = np.arange(int(seconds * rate)) / rate
  return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
