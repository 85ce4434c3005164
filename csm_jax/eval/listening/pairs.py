"""The pairs directory: a ``pairs.json`` plus the audio it names.

Format (all paths relative to the directory, and inside it)::

  {"name": "exp3-v1",                  # optional; default: the folder name
   "system": "ours",                   # optional label of our system
   "baseline": "ground_truth",         # optional label of the other side
   "conditions": ["no_context", "context"],  # optional, see below
   "traps": 1,                         # optional trap pairs per condition
   "practice": {"a": "p/a.wav", "b": "p/b.wav", "text": "..."},  # optional
   "items": [
     {"id": "001", "ours": "ours/001.wav", "baseline": "baseline/001.wav",
      "text": "What we hear.",                       # optional
      "context": "context/001.wav",                  # optional
      "context_text": "The previous turn."}]}        # optional

``conditions`` defaults to both when any item has a ``context``, else to
``no_context``; the ``context`` condition uses only items with a context.
Without ``practice`` the training page plays the first item's pair.
Every mistake raises ``PairsError`` naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil

import soundfile as sf

from csm_jax.eval.listening import ListeningError

CONDITIONS = ("no_context", "context")
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg")
_TOP_KEYS = {"name", "system", "baseline", "conditions", "traps", "practice",
             "items"}
_ITEM_KEYS = {"id", "ours", "baseline", "text", "context", "context_text"}
_PRACTICE_KEYS = {"a", "b", "text", "context", "context_text"}


class PairsError(ListeningError):
  """The pairs directory is unusable; the message names file and field."""


@dataclasses.dataclass(frozen=True)
class Item:
  id: str
  ours: str                 # paths relative to the pairs directory
  baseline: str
  text: str = ""
  context: str | None = None
  context_text: str = ""


@dataclasses.dataclass(frozen=True)
class Practice:
  a: str
  b: str
  text: str = ""
  context: str | None = None
  context_text: str = ""


@dataclasses.dataclass(frozen=True)
class PairSet:
  root: str                 # absolute, symlinks resolved
  name: str
  system: str
  baseline: str
  conditions: tuple[str, ...]
  traps: int
  practice: Practice
  items: tuple[Item, ...]

  def files(self) -> frozenset[str]:
    """Every audio path the set names: the only files the server sends."""
    out = {self.practice.a, self.practice.b, self.practice.context}
    for it in self.items:
      out.update((it.ours, it.baseline, it.context))
    out.discard(None)
    return frozenset(out)

  def path(self, rel: str) -> str:
    return os.path.join(self.root, rel)


def _get(obj: dict, key: str, types, where: str, default=None):
  if key not in obj:
    if default is dataclasses.MISSING:
      raise PairsError(f"{where}: missing field {key!r}")
    return default
  value = obj[key]
  # bool is an int subclass; true/false is never a count or a name here.
  if isinstance(value, bool) or not isinstance(value, types):
    want = types.__name__ if isinstance(types, type) else "/".join(
        t.__name__ for t in types)
    raise PairsError(f"{where}: field {key!r} must be {want}, got "
                     f"{type(value).__name__} {value!r}")
  return value


def _check_keys(obj: dict, allowed: set[str], where: str) -> None:
  unknown = sorted(set(obj) - allowed)
  if unknown:
    # A typo ("contxt") would otherwise silently drop a condition.
    raise PairsError(f"{where}: unknown field {unknown[0]!r}; expected "
                     f"some of {sorted(allowed)}")


def _audio(obj: dict, key: str, root: str, where: str,
           required: bool = True) -> str | None:
  rel = _get(obj, key, str, where,
             dataclasses.MISSING if required else None)
  if rel is None:
    return None
  field = f"{where}.{key}"
  norm = os.path.normpath(rel)
  if not rel or os.path.isabs(rel) or norm == ".." or norm.startswith(
      ".." + os.sep):
    raise PairsError(f"{field}: {rel!r} must be a relative path inside "
                     f"{root}")
  full = os.path.realpath(os.path.join(root, norm))
  if os.path.commonpath([full, root]) != root:
    raise PairsError(f"{field}: {rel!r} leads outside {root}")
  if not os.path.isfile(full):
    raise PairsError(f"{field}: audio file {os.path.join(root, norm)} does "
                     "not exist")
  if not norm.lower().endswith(AUDIO_EXTENSIONS):
    raise PairsError(f"{field}: {rel!r} is not one of {AUDIO_EXTENSIONS}")
  try:
    info = sf.info(full)
  except (RuntimeError, sf.LibsndfileError) as e:
    raise PairsError(f"{field}: cannot read audio {full} ({e})") from None
  if info.frames == 0:
    raise PairsError(f"{field}: audio file {full} is empty")
  return norm.replace(os.sep, "/")


def _item(obj, i: int, root: str, where: str) -> Item:
  w = f"{where}: items[{i}]"
  if not isinstance(obj, dict):
    raise PairsError(f"{w}: expected a JSON object, got "
                     f"{type(obj).__name__}")
  _check_keys(obj, _ITEM_KEYS, w)
  item_id = _get(obj, "id", (str, int), w, dataclasses.MISSING)
  item_id = str(item_id).strip()
  if not item_id:
    raise PairsError(f"{w}: field 'id' is empty")
  w = f"{w} (id {item_id!r})"
  return Item(item_id, _audio(obj, "ours", root, w),
              _audio(obj, "baseline", root, w),
              _get(obj, "text", str, w, ""),
              _audio(obj, "context", root, w, required=False),
              _get(obj, "context_text", str, w, ""))


def _practice(obj, root: str, where: str, first: Item) -> Practice:
  if obj is None:
    return Practice(first.ours, first.baseline, first.text, first.context,
                    first.context_text)
  w = f"{where}: practice"
  if not isinstance(obj, dict):
    raise PairsError(f"{w}: expected a JSON object")
  _check_keys(obj, _PRACTICE_KEYS, w)
  return Practice(_audio(obj, "a", root, w), _audio(obj, "b", root, w),
                  _get(obj, "text", str, w, ""),
                  _audio(obj, "context", root, w, required=False),
                  _get(obj, "context_text", str, w, ""))


def load_pairs(directory: str) -> PairSet:
  """Reads and checks ``directory/pairs.json`` and every file it names."""
  if not os.path.isdir(directory):
    raise PairsError(f"{directory}: pairs directory does not exist")
  root = os.path.realpath(directory)
  where = os.path.join(directory, "pairs.json")
  if not os.path.isfile(where):
    raise PairsError(f"{where}: no pairs.json in the pairs directory")
  try:
    with open(where, encoding="utf-8") as f:
      obj = json.load(f)
  except json.JSONDecodeError as e:
    raise PairsError(f"{where}: not valid JSON ({e})") from None
  except UnicodeDecodeError as e:
    raise PairsError(f"{where}: not UTF-8 text ({e.reason})") from None
  if not isinstance(obj, dict):
    raise PairsError(f"{where}: expected a JSON object at the top, got "
                     f"{type(obj).__name__}")
  _check_keys(obj, _TOP_KEYS, where)
  raw_items = _get(obj, "items", list, where, dataclasses.MISSING)
  if not raw_items:
    raise PairsError(f"{where}: field 'items' is empty")
  items, seen = [], set()
  for i, raw in enumerate(raw_items):
    item = _item(raw, i, root, where)
    if item.id in seen:
      raise PairsError(f"{where}: items[{i}]: id {item.id!r} is used twice")
    seen.add(item.id)
    items.append(item)
  with_context = any(it.context for it in items)
  default = list(CONDITIONS) if with_context else ["no_context"]
  conditions = _get(obj, "conditions", list, where, default)
  if not conditions or any(c not in CONDITIONS for c in conditions) or len(
      set(conditions)) != len(conditions):
    raise PairsError(f"{where}: field 'conditions' must list distinct "
                     f"values of {CONDITIONS}, got {conditions!r}")
  if "context" in conditions and not with_context:
    raise PairsError(f"{where}: field 'conditions' asks for 'context' but "
                     "no item has a 'context' audio")
  traps = _get(obj, "traps", int, where, 1)
  if traps < 0:
    raise PairsError(f"{where}: field 'traps' must be >= 0, got {traps}")
  return PairSet(
      root=root,
      name=_get(obj, "name", str, where, os.path.basename(root)) or "pairs",
      system=_get(obj, "system", str, where, "ours"),
      baseline=_get(obj, "baseline", str, where, "baseline"),
      conditions=tuple(conditions), traps=traps,
      practice=_practice(obj.get("practice"), root, where, items[0]),
      items=tuple(items))


def _wavs(directory: str, flag: str) -> dict[str, str]:
  if not os.path.isdir(directory):
    raise PairsError(f"{flag}: {directory} is not a directory")
  names = {n: os.path.join(directory, n) for n in sorted(os.listdir(directory))
           if n.lower().endswith(AUDIO_EXTENSIONS)}
  if not names:
    raise PairsError(f"{flag}: no audio files ({', '.join(AUDIO_EXTENSIONS)})"
                     f" in {directory}")
  return names


def _sidecar_text(*wavs: str) -> str:
  """Transcript from ``NAME.txt`` next to the first wav that has one."""
  for wav in wavs:
    txt = os.path.splitext(wav)[0] + ".txt"
    if os.path.isfile(txt):
      with open(txt, encoding="utf-8") as f:
        return " ".join(f.read().split())
  return ""


def build_pairs(ours: str, baseline: str, out: str, context: str | None = None,
                *, name: str | None = None, system: str = "ours",
                baseline_name: str = "baseline") -> PairSet:
  """Copies same-named audio of two (three) folders into a pairs directory.

  Transcripts come from ``NAME.txt`` files beside the audio, when present.
  """
  sides = {"ours": _wavs(ours, "--ours"),
           "baseline": _wavs(baseline, "--baseline")}
  if context:
    sides["context"] = _wavs(context, "--context")
  names = set(sides["ours"])
  for flag, found in sides.items():
    if set(found) != names:
      odd = sorted(set(found) ^ names)
      raise PairsError(f"--{flag}: {len(odd)} file name(s) not in every "
                       f"folder, e.g. {odd[0]!r}; files are paired by name")
  if os.path.exists(os.path.join(out, "pairs.json")):
    raise PairsError(f"--out: {out}/pairs.json already exists; choose a new "
                     "folder")
  items = []
  for n in sorted(names):
    stem = os.path.splitext(n)[0]
    item = {"id": stem, "text": _sidecar_text(sides["ours"][n],
                                               sides["baseline"][n])}
    for side, found in sides.items():
      os.makedirs(os.path.join(out, side), exist_ok=True)
      shutil.copyfile(found[n], os.path.join(out, side, n))
      item[side] = f"{side}/{n}"
    if context:
      item["context_text"] = _sidecar_text(sides["context"][n])
    items.append(item)
  doc = {"name": name or os.path.basename(os.path.abspath(out)),
         "system": system, "baseline": baseline_name, "items": items}
  with open(os.path.join(out, "pairs.json"), "w", encoding="utf-8") as f:
    json.dump(doc, f, indent=1, ensure_ascii=False)
  return load_pairs(out)
