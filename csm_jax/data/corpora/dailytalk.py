"""DailyTalk (Lee, Park & Kim, ICASSP 2023) as a tfds builder.

DailyTalk is 2,541 DailyDialog conversations re-recorded by two speakers
(one male, one female) for conversational TTS: about 20 hours, one WAV per
turn, every turn transcribed and labelled with DailyDialog's emotion (no
emotion, happiness, sadness, anger, fear, disgust, surprise). It is
CC BY-SA 4.0; download it yourself from the link in
https://github.com/keonlee9420/DailyTalk and extract it (tfds
``manual_dir``). Expected layout, the one the authors' own preprocessing
reads::

  <manual_dir>/
    metadata.json             {"<dialog>": {"<turn>": {"emotion": "...", ...}}}
    data/
      <dialog>/               0, 1, 2, ... one folder per conversation
        <turn>_<speaker>_d<dialog>.wav     e.g. 0_1_d0.wav
        <turn>_<speaker>_d<dialog>.txt     its transcript (first line)

``metadata.json`` only supplies the emotion label (optional; missing ->
no label). Files in ``data/`` that do not match the pattern are ignored.
The corpus is converted to conversations in memory (the manifest form of
``csm_jax.data.corpora.manifest``) and built by ``manifest_builder``'s code, so its
checks, rejection report, features and Beam support are the same:
conversation ids are ``d<dialog>``, speaker names ``"0"``/``"1"``.

Expresso, the other candidate, was not chosen: its conversational part is
stereo recordings (a speaker per channel) with VAD segments but no
transcripts, which CSM training needs.
"""

from __future__ import annotations

import json
import os
import re
from typing import Iterator

import tensorflow_datasets as tfds

from csm_jax.data.corpora import manifest as manifest_lib
from csm_jax.data.corpora.turns import default_data_dir
from csm_jax.data.corpora import manifest_builder

NAME = "dailytalk"
HOMEPAGE = "https://github.com/keonlee9420/DailyTalk"
_TURN_RE = re.compile(r"^(\d+)_(\d+)_d(\d+)\.wav$")


def read_transcript(path: str) -> str:
  """First line of a transcript file; "" when absent (-> empty_text).

  Undecodable bytes are kept as surrogate escapes so the turn is rejected
  as ``bad_text`` by the manifest checks rather than crashing the scan.
  """
  if not os.path.isfile(path):
    return ""
  with open(path, encoding="utf-8", errors="surrogateescape") as f:
    return f.readline().strip()


def conversations(root: str) -> Iterator[manifest_lib.Conversation]:
  """DailyTalk's conversations under ``root`` (see module docstring)."""
  data = os.path.join(root, "data")
  if not os.path.isdir(data):
    raise manifest_lib.ManifestError(
        f"{root}: no data/ folder; expected the extracted DailyTalk layout "
        "<root>/data/<dialog>/<turn>_<speaker>_d<dialog>.wav (see "
        "csm_jax/data/corpora/dailytalk.py)")
  meta_path = os.path.join(root, "metadata.json")
  meta = {}
  if os.path.isfile(meta_path):
    try:
      with open(meta_path, encoding="utf-8") as f:
        meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
      raise manifest_lib.ManifestError(
          f"{meta_path}: not valid JSON ({e})") from None
  dialogs = [d for d in os.listdir(data) if d.isdigit()]
  for dialog in sorted(dialogs, key=int):
    folder = os.path.join(data, dialog)
    found = []
    for name in os.listdir(folder):
      m = _TURN_RE.match(name)
      if m and m.group(3) == dialog:
        found.append((int(m.group(1)), m.group(2), name))
    if not found:
      continue
    turns = []
    for i, (turn, speaker, name) in enumerate(sorted(found)):
      info = meta.get(dialog, {}).get(str(turn), {})
      emotion = info.get("emotion", "") if isinstance(info, dict) else ""
      wav = os.path.join(folder, name)
      turns.append(manifest_lib.Turn(
          speaker=speaker, index=i, audio=wav,
          text=read_transcript(wav[: -len(".wav")] + ".txt"),
          emotion=emotion if isinstance(emotion, str) else ""))
    yield manifest_lib.Conversation(f"d{dialog}", tuple(turns),
                                    source=folder)


class Dailytalk(manifest_builder.ManifestDialogues):
  """DailyTalk conversations (manual download), one example per turn."""

  name = NAME
  BUILDER_CONFIGS = [manifest_builder.ManifestConfig(
      name="default", description="DailyTalk from the manual dir")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      f"Download DailyTalk (link in {HOMEPAGE}), extract it and pass the "
      "folder holding metadata.json and data/ as manual_dir.")

  def _source_name(self, dl_manager) -> str:
    return os.fspath(dl_manager.manual_dir)

  def _conversations(self, dl_manager):
    return conversations(self._source_name(dl_manager))


def builder(data_dir: str | None = None, **kwargs) -> Dailytalk:
  return Dailytalk(data_dir=data_dir or default_data_dir(),
                   file_format="array_record", **kwargs)


def prepare(manual_dir: str, data_dir: str | None = None, *,
            beam_runner=None, beam_options=None) -> Dailytalk:
  """Builds DailyTalk from the extracted ``manual_dir`` if not built yet."""
  b = builder(data_dir)
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=manual_dir, beam_runner=beam_runner,
      beam_options=beam_options))
  return b


def grain_dataset(split: str, data_dir: str | None = None, *,
                  shuffle_seed: int | None = None):
  """A built split as a ``grain.MapDataset`` (optionally shuffled)."""
  src = manifest_builder.source_of(
      builder(data_dir), split,
      f"python -m csm_jax.prepare --dataset={NAME} --manual_dir=DIR")
  return manifest_builder.as_grain(src, shuffle_seed)
