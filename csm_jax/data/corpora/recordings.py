"""``recordings``: long recordings and their transcripts become a corpus.

Each recording of a recordings manifest (``recording_manifest``) is read
block by block, its speech found by energy, its transcript force-aligned
with a CTC model (``ctc_align``), cut into turns at speaker changes and
long pauses, and its speakers taken from the transcript's tags or found by
clustering (``turn_cutting``). What comes out is an ordinary conversation
manifest of already-cut turns (``turns.jsonl``: one conversation per
recording, every turn a ``start``/``end`` segment of the recording), which
``manifest_builder`` then builds into the per-turn records every corpus of
the project stores. So the result is the ``manifest_dialogues`` build
``<name>``: training reads it with ``data.corpus=manifest_dialogues`` and
``data.corpus_size=<name>``, evaluation and the experiments alike.

Both stages run on Apache Beam when pipeline options are given: the
alignment as one pipeline (recordings spread over workers), the build as
``manifest_builder``'s.

Everything lands under ``<data_dir>/recordings/<name>/``: ``turns.jsonl``,
``alignment_report.json`` (also copied beside the built records) and
``inputs.json`` (what the alignment was made from; an unchanged input is
not aligned again). The report lists per recording its aligned and
unaligned audio spans, its unaligned transcript words, its turns (kept or
excluded, with speaker, times and alignment score) and its speakers; and
the recordings rejected, one line each naming the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Callable, Sequence

import numpy as np
import soundfile as sf
from etils import epath

from csm_jax.audio import io as audio_lib
from csm_jax.data.corpora import ctc_align
from csm_jax.data.corpora import long_audio
from csm_jax.data.corpora import manifest_builder
from csm_jax.data.corpora import recording_manifest as rm
from csm_jax.data.corpora import speaker_clusters
from csm_jax.data.corpora import turn_cutting
from csm_jax.data.corpora.turns import default_data_dir

NAME = "recordings"
TURNS = "turns.jsonl"
REPORT = "alignment_report.json"
INPUTS = "inputs.json"
RecordingsError = rm.RecordingsError


@dataclasses.dataclass
class Options:
  align: ctc_align.AlignOptions = dataclasses.field(
      default_factory=ctc_align.AlignOptions)
  cut: turn_cutting.CutOptions = dataclasses.field(
      default_factory=turn_cutting.CutOptions)


def read_span(path: str, start: float, end: float, sample_rate: int
              ) -> np.ndarray:
  """Mono float32 samples of [start, end) seconds of ``path`` (by seek)."""
  info = sf.info(path)
  a = max(0, int(start * info.samplerate))
  b = min(info.frames, int(np.ceil(end * info.samplerate)))
  data, sr = sf.read(path, start=a, stop=max(a + 1, b), dtype="float32",
                     always_2d=True)
  x = np.nan_to_num(data.mean(axis=1))
  return audio_lib.resample(x, sr, sample_rate)


def _merge(spans: Sequence[tuple[float, float]], gap: float
           ) -> list[tuple[float, float]]:
  out: list[list[float]] = []
  for s, e in sorted(spans):
    if out and s - out[-1][1] <= gap:
      out[-1][1] = max(out[-1][1], e)
    else:
      out.append([s, e])
  return [(s, e) for s, e in out]


def _subtract(regions, covered, margin: float, min_len: float):
  """Parts of ``regions`` outside ``covered`` (each widened by margin)."""
  out = []
  for s, e in regions:
    pieces = [(s, e)]
    for cs, ce in covered:
      cs, ce = cs - margin, ce + margin
      nxt = []
      for ps, pe in pieces:
        if ce <= ps or cs >= pe:
          nxt.append((ps, pe))
          continue
        if cs > ps:
          nxt.append((ps, cs))
        if ce < pe:
          nxt.append((ce, pe))
      pieces = nxt
    out += [p for p in pieces if p[1] - p[0] >= min_len]
  return out


def _r(x: float) -> float:
  return round(float(x), 3)


def segment_recording(rec: rm.Recording, text: str, aligner,
                      options: Options) -> tuple[dict | None, dict]:
  """(conversation of kept turns or None, report entry) of one recording.

  Raises ``RecordingRejected`` for audio that does not decode and for a
  transcript with no word the aligner can spell.
  """
  lines = rm.parse_transcript(text, rec.tagged)
  words = ctc_align.words_of([ln.text for ln in lines], aligner)
  if not any(w.labels.size for w in words):
    raise rm.RecordingRejected(rec.transcript_name, "empty_transcript",
                               "no word in the aligner's alphabet")
  try:
    sc = long_audio.scan(rec.audio, aligner)
  except (sf.LibsndfileError, RuntimeError, ValueError) as e:
    raise rm.RecordingRejected(rec.audio, "corrupt", "the decoder stopped: "
                               + str(e).strip()) from None
  threshold = long_audio.speech_threshold(sc.energy_db)
  regions = long_audio.speech_regions(sc.energy_db, threshold)
  segments = long_audio.alignment_segments(regions, sc.duration_s,
                                           sc.energy_db)
  ctc_align.align(sc.log_probs, sc.seconds_per_frame, segments, words,
                  aligner, options.align)
  tagged = bool(lines) and lines[0].speaker is not None
  if tagged:
    groups = turn_cutting.tagged_groups(
        words, [ln.speaker for ln in lines], options.cut)
    n_speakers = len({ln.speaker for ln in lines})
  else:
    groups, n_speakers = turn_cutting.clustered_groups(
        words, _embedder(rec.audio, aligner), rec.num_speakers, options.cut)
  turns = turn_cutting.make_turns(groups, sc.energy_db, threshold,
                                  sc.duration_s, options.cut)
  kept = [t for t in turns if t.kept]
  conv = None
  if kept:
    conv = {"conversation_id": rec.recording_id, "turns": [
        {"speaker": t.speaker, "text": t.text, "audio": rec.audio,
         "start": _r(t.start), "end": _r(t.end),
         "speech_start": _r(t.speech_start), "speech_end": _r(t.speech_end),
         "score": _r(t.score), "word_starts": _word_starts(t)}
        for t in kept]}
    if rec.split:
      conv["split"] = rec.split
  aligned = [w for w in words if w.aligned]
  spans = _merge([(w.start, w.end) for w in aligned], 0.5)
  report = {
      "recording_id": rec.recording_id, "audio": rec.audio,
      "transcript": rec.transcript_name,
      "duration_s": _r(sc.duration_s),
      "speech_s": _r(sum(e - s for s, e in regions)),
      "non_finite_samples": sc.non_finite,
      "speakers": {"source": "tags" if tagged else "clustering",
                   "count": n_speakers,
                   "kept": sorted({t.speaker for t in kept})},
      "words": len(words), "aligned_words": len(aligned),
      "aligned_share": _r(len(aligned) / max(len(words), 1)),
      "aligned_spans": [[_r(s), _r(e)] for s, e in spans],
      "unaligned_audio": [[_r(s), _r(e)] for s, e in _subtract(
          regions, spans, 0.2, 0.3)],
      "unaligned_text": ctc_align.unaligned_runs(words),
      "turns_kept": len(kept), "turns_excluded": len(turns) - len(kept),
      "turns": [{"speaker": t.speaker, "kept": t.kept,
                 "excluded": t.excluded, "score": _r(t.score),
                 "speech_start": _r(t.speech_start),
                 "speech_end": _r(t.speech_end),
                 "words": len(t.words), "aligned_words": len(t.aligned),
                 "text": t.text} for t in turns],
  }
  return conv, report


def _word_starts(turn: turn_cutting.CutTurn) -> list[float | None]:
  """Each word's aligned start from the turn's start (None: not aligned),
  for the aligned text stream (``manifest``'s ``word_starts``)."""
  return [_r(max(w.start - turn.start, 0.0)) if w.aligned else None
          for w in turn.words]


def _embedder(path: str, aligner) -> Callable:
  def embed(spans):
    sr = int(getattr(aligner, "sample_rate", 16000))
    clips = [read_span(path, s, e, sr) for s, e in spans]
    encoder = getattr(aligner, "speaker_embeddings", None)
    if callable(encoder):
      return np.asarray(encoder(clips)), speaker_clusters.ENCODER_SLACK
    return speaker_clusters.standardize(np.stack(
        [speaker_clusters.voice_vector(c, sr) for c in clips])
                                        ), speaker_clusters.VOICE_SLACK
  return embed


def _one(rec: rm.Recording, aligner, options: Options) -> dict:
  """A recording's outcome as one JSON-ready record (for either path)."""
  try:
    text = rm.check(rec)
    conv, report = segment_recording(rec, text, aligner, options)
    return {"conversation": conv, "report": report}
  except rm.RecordingRejected as e:
    return {"rejected": _rejection(rec, e)}


def _rejection(rec: rm.Recording, e: rm.RecordingRejected) -> dict:
  return {"recording_id": rec.recording_id, "file": e.path,
          "reason": e.reason, "detail": e.detail, "line": str(e)}


def align_all(recordings: Sequence[rm.Recording], aligner, options: Options,
              beam_options=None, work_dir: str | None = None) -> list[dict]:
  """Every recording's outcome, in manifest order (Beam when asked)."""
  if beam_options is None:
    return [_one(r, aligner, options) for r in recordings]
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  beam = tfds.core.lazy_imports.apache_beam
  # epath: on a cluster the work dir is a bucket or a shared filesystem.
  out = epath.Path(work_dir)
  for old in out.glob("aligned-*"):
    old.unlink()
  prefix = os.fspath(out / "aligned")
  with beam.Pipeline(options=beam_options) as pipe:
    _ = (pipe
         | "Create" >> beam.Create(list(recordings), reshuffle=True)
         | "Align" >> beam.Map(lambda r: json.dumps(
             {"id": r.recording_id, **_one(r, aligner, options)}))
         | "Write" >> beam.io.WriteToText(prefix, file_name_suffix=".jsonl"))
  got = {}
  for path in sorted(out.glob("aligned-*.jsonl")):
    for raw in path.read_text().splitlines():
      if raw.strip():
        row = json.loads(raw)
        got[row.pop("id")] = row
    path.unlink()
  return [got[r.recording_id] for r in recordings]


def summarize(manifest: str, outcomes: Sequence[dict], options: Options
              ) -> dict:
  reports = [o["report"] for o in outcomes if "report" in o]
  rejected = [o["rejected"] for o in outcomes if "rejected" in o]
  words = sum(r["words"] for r in reports)
  aligned = sum(r["aligned_words"] for r in reports)
  return {
      "manifest": manifest, "recordings": len(outcomes),
      "aligned_recordings": len(reports), "rejected_recordings": rejected,
      "min_turn_score": options.cut.min_turn_score,
      "min_word_score": options.align.min_word_score,
      "words": words, "aligned_words": aligned,
      "aligned_share": _r(aligned / max(words, 1)),
      "turns_kept": sum(r["turns_kept"] for r in reports),
      "turns_excluded": sum(r["turns_excluded"] for r in reports),
      "per_recording": reports}


def summary_lines(report: dict) -> list[str]:
  out = [f"{report['manifest']}: {report['aligned_recordings']} of "
         f"{report['recordings']} recordings aligned; "
         f"{report['aligned_words']} of {report['words']} words aligned "
         f"({100 * report['aligned_share']:.1f}%); turns kept "
         f"{report['turns_kept']}, excluded below score "
         f"{report['min_turn_score']}: {report['turns_excluded']}"]
  for r in report["per_recording"]:
    out.append(f"  {r['recording_id']}: {r['turns_kept']} turns "
               f"({r['turns_excluded']} excluded), {r['speakers']['count']} "
               f"speakers ({r['speakers']['source']}), "
               f"{len(r['unaligned_audio'])} unaligned audio spans, "
               f"{len(r['unaligned_text'])} unaligned transcript spans")
  out += [f"  {r['line']}" for r in report["rejected_recordings"]]
  return out


def inputs_record(manifest: str, recordings: Sequence[rm.Recording],
                  aligner, options: Options) -> dict:
  """What an alignment was made from: the manifest's recordings, their
  files' sizes and times, the aligner and the options."""
  h = hashlib.sha256()
  for r in recordings:
    h.update(repr(dataclasses.astuple(r)).encode("utf-8", "surrogateescape"))
    for p in (r.audio, r.transcript):
      try:
        st = os.stat(p) if p else None
        h.update(repr(p and (st.st_size, st.st_mtime_ns)).encode(
            "utf-8", "surrogateescape"))
      except OSError:
        h.update(b"missing")
  ident = getattr(aligner, "fingerprint", None) or type(aligner).__name__
  return {"manifest": manifest, "recordings": h.hexdigest(),
          "aligner": str(ident),
          "options": json.loads(json.dumps(dataclasses.asdict(options)))}


def work_dir(name: str, data_dir: str | None = None) -> str:
  return os.path.join(data_dir or default_data_dir(), NAME, name)


def _fail(manifest: str, report: dict) -> RecordingsError:
  rej = report["rejected_recordings"]
  if len(rej) == 1 and not report["aligned_recordings"]:
    return RecordingsError(rej[0]["line"])
  if rej and not report["aligned_recordings"]:
    # The lines were printed one per file; an error line is cut at 600
    # characters, so it names the first and says where the rest are.
    return RecordingsError(
        f"{manifest}: every recording was rejected ({len(rej)}, one line "
        f"each above and in {REPORT}); the first: {rej[0]['line']}")
  return RecordingsError(
      f"{manifest}: no turn reached the alignment score "
      f"{report['min_turn_score']} ({report['turns_excluded']} excluded, "
      f"{report['aligned_words']} of {report['words']} words aligned; "
      f"see {REPORT})")


def precheck(manifest: str, log: Callable[[str], Any] = print) -> None:
  """Fails at once, before any model loads, when the checks that need no
  decoding reject every recording of ``manifest``."""
  manifest = os.path.abspath(manifest)
  outcomes = []
  for rec, _, rejected in rm.iter_checked(rm.read_manifest(manifest)):
    if rejected is None:
      return
    outcomes.append({"rejected": _rejection(rec, rejected)})
  report = summarize(manifest, outcomes, Options())
  for ln in summary_lines(report):
    log(ln)
  raise _fail(manifest, report)


def align_manifest(manifest: str, aligner, name: str | None = None,
                   data_dir: str | None = None, options: Options | None = None,
                   beam_options=None, log: Callable[[str], Any] = print) -> str:
  """Stage one: aligns and cuts every recording; returns turns.jsonl.

  Does nothing when the manifest, its files, the aligner and the options
  are those of the last run.
  """
  options = options or Options()
  manifest = os.path.abspath(manifest)
  recordings = rm.read_manifest(manifest)
  name = name or manifest_builder.config_name(manifest)
  out = work_dir(name, data_dir)
  out_dir = epath.Path(out)
  out_dir.mkdir(parents=True, exist_ok=True)
  turns_path = os.path.join(out, TURNS)
  record = inputs_record(manifest, recordings, aligner, options)
  try:
    same = json.loads((out_dir / INPUTS).read_text()) == record
  except (OSError, ValueError):
    same = False
  if same and (out_dir / TURNS).exists():
    log(f"{turns_path} is up to date with {manifest}")
    return turns_path
  outcomes = align_all(recordings, aligner, options, beam_options, out)
  report = summarize(manifest, outcomes, options)
  (out_dir / REPORT).write_text(json.dumps(report, indent=1))
  for ln in summary_lines(report):
    log(ln)
  convs = [o["conversation"] for o in outcomes if o.get("conversation")]
  if not convs:
    raise _fail(manifest, report)
  (out_dir / TURNS).write_text("".join(json.dumps(c) + "\n" for c in convs))
  (out_dir / INPUTS).write_text(json.dumps(record, indent=1))
  return turns_path


def prepare(manifest: str, aligner, name: str | None = None,
            data_dir: str | None = None, options: Options | None = None, *,
            beam_options=None, beam_runner=None,
            log: Callable[[str], Any] = print):
  """Aligns, cuts and builds ``manifest``'s recordings; returns the
  ``manifest_dialogues`` builder of the result (see module doc)."""
  name = name or manifest_builder.config_name(os.path.abspath(manifest))
  if beam_runner is not None and beam_options is None:
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    beam = tfds.core.lazy_imports.apache_beam
    beam_options = beam.options.pipeline_options.PipelineOptions(
        flags=[f"--runner={beam_runner}"])
  turns_path = align_manifest(manifest, aligner, name, data_dir, options,
                              beam_options, log)
  b = manifest_builder.prepare(turns_path, name, data_dir,
                               beam_options=beam_options)
  src = epath.Path(work_dir(name, data_dir)) / REPORT
  if src.exists():
    src.copy(epath.Path(b.data_dir) / REPORT, overwrite=True)
  return b
