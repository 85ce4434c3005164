"""``python -m csm_jax.train`` with a checkpoint commit that fails: disk full.

  python -m tests.faults.faulty_train --config=... --workdir=...

with ``FAULT_ENOSPC_STEP=N``: the background commit of checkpoint N raises
ENOSPC, as a file system that fills up mid-save does (for machines where
the suite cannot mount a tiny tmpfs). Everything else is the real command
line, run as ``__main__``.
"""

import errno
import os
import runpy

from orbax.checkpoint._src.path import atomicity

_STEP = int(os.environ["FAULT_ENOSPC_STEP"])
_finalize = atomicity.AtomicRenameTemporaryPath.finalize


async def _failing_finalize(self, *args, **kwargs):
  final = os.fspath(self.get_final())
  if os.path.basename(final) == str(_STEP):
    raise OSError(errno.ENOSPC, "No space left on device",
                  os.fspath(self.get()))
  return await _finalize(self, *args, **kwargs)


atomicity.AtomicRenameTemporaryPath.finalize = _failing_finalize
runpy.run_module("csm_jax.train", run_name="__main__", alter_sys=True)
