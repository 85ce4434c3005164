"""ClipMemo: once per distinct clip, copies out, the oldest dropped."""

import numpy as np

from csm_jax.audio.clip_memo import ClipMemo


def test_a_clip_is_computed_once_and_callers_get_copies():
  memo, calls = ClipMemo(2), []

  def compute(a):
    calls.append(len(a))
    return a * 2, np.ones(3)

  a = np.arange(4, dtype=np.float32)
  first = memo.get(a, lambda: compute(a))
  first[0][:] = -1
  again = memo.get(a.copy(), lambda: compute(a))
  assert len(calls) == 1
  np.testing.assert_array_equal(again[0], a * 2)
  memo.get(a, lambda: compute(a), 16000)      # another key: computed
  memo.get(a + 1, lambda: compute(a + 1))     # drops the oldest
  memo.get(a, lambda: compute(a))
  assert len(calls) == 4
