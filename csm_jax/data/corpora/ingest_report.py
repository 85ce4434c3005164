"""What a corpus build kept and what it rejected, and why.

Every turn a builder looks at is kept (and counted) or rejected with a
reason from ``manifest.REASONS`` (and recorded: conversation, turn, file,
reason, detail). ``IngestReport`` counts the rejections per reason, lists every rejected file, prints a short summary at the end of a
build and is written as ``ingest_report.json`` next to the dataset's
ArrayRecord files. Builds split the work (per split, per Beam worker), so
reports are written in parts and merged.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Iterable

from etils import epath

REPORT_NAME = "ingest_report.json"
PART_PREFIX = "ingest_report-part-"
_MAX_PRINTED = 20


def status(conversation_id: str, turn: int, audio: str, reason: str,
           detail: str = "") -> dict:
  """One rejected turn, as a JSON-ready record."""
  return {"conversation_id": conversation_id, "turn": turn, "audio": audio,
          "reason": reason, "detail": detail}


@dataclasses.dataclass
class IngestReport:
  manifest: str
  kept: int = 0
  rejected: list[dict] = dataclasses.field(default_factory=list)

  @property
  def counts(self) -> dict[str, int]:
    return dict(sorted(collections.Counter(
        r["reason"] for r in self.rejected).items()))

  @property
  def total(self) -> int:
    return self.kept + len(self.rejected)

  def to_json(self) -> dict:
    order = sorted(self.rejected, key=lambda r: (r["conversation_id"],
                                                 r["turn"]))
    return {"manifest": self.manifest, "turns": self.total,
            "kept": self.kept, "rejected": len(self.rejected),
            "rejected_by_reason": self.counts, "rejected_turns": order}

  def summary(self) -> str:
    lines = [f"{self.manifest}: kept {self.kept} of {self.total} turns, "
             f"rejected {len(self.rejected)}"]
    lines += [f"  {reason}: {n}" for reason, n in self.counts.items()]
    for r in self.to_json()["rejected_turns"][:_MAX_PRINTED]:
      lines.append(f"  - {r['audio']} ({r['conversation_id']} turn "
                   f"{r['turn']}): {r['reason']} {r['detail']}".rstrip())
    if len(self.rejected) > _MAX_PRINTED:
      lines.append(f"  ... {len(self.rejected) - _MAX_PRINTED} more in "
                   f"{REPORT_NAME}")
    return "\n".join(lines)

  def write(self, directory: str) -> str:
    path = epath.Path(directory) / REPORT_NAME
    # ASCII escapes: a path or detail may carry undecodable bytes.
    path.write_text(json.dumps(self.to_json(), indent=1))
    return str(path)


def write_part(directory: str, name: str, rejected: Iterable[dict],
               kept: int) -> str:
  """One split's (or worker's) outcome, merged later by ``read_parts``.

  Only rejections are listed: a 100K-hour build keeps tens of millions of
  turns, and a count is all the report needs of those.
  """
  # epath: on Beam the dataset dir may be a bucket (gs://...) or another
  # filesystem the workers share.
  d = epath.Path(directory)
  d.mkdir(parents=True, exist_ok=True)
  path = d / f"{PART_PREFIX}{name}.json"
  path.write_text(json.dumps({"kept": int(kept), "rejected": list(rejected)}))
  return str(path)


def read_parts(directory: str, manifest: str,
               remove: bool = True) -> IngestReport:
  """Merges (and by default deletes) every part written in ``directory``."""
  report = IngestReport(manifest)
  d = epath.Path(directory)
  if not d.exists():
    return report
  for path in sorted(d.glob(f"{PART_PREFIX}*.json")):
    part = json.loads(path.read_text())
    report.kept += part["kept"]
    report.rejected.extend(part["rejected"])
    if remove:
      path.unlink()
  return report
