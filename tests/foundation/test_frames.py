"""Turn -> row layout, EOS frames, context trimming and packing."""

import numpy as np
import pytest

from csm_jax.data.examples.frames import (ContextTrimmed, Turn, conversation_rows, pack,
                                 trim_context, turn_rows)


def _turn(n_text, n_frames, trained=False, n_cb=3):
  codes = None if n_frames is None else np.full((n_frames, n_cb), 7)
  return Turn(np.arange(1, n_text + 1), codes, trained)


def test_turn_rows_put_text_then_audio_then_eos():
  r = turn_rows(_turn(3, 4, trained=True), 3)
  assert len(r["text_tokens"]) == 3 + 4 + 1
  assert r["mask"][:3, -1].all() and not r["mask"][:3, :-1].any()
  assert r["mask"][3:, :-1].all() and not r["mask"][3:, -1].any()
  np.testing.assert_array_equal(r["audio_tokens"][-1], 0)  # end of speech
  np.testing.assert_array_equal(r["loss_mask"], [0, 0, 0, 1, 1, 1, 1, 1])


def test_turn_to_generate_has_only_text_rows():
  r = turn_rows(_turn(5, None), 3)
  assert len(r["text_tokens"]) == 5 and not r["mask"][:, :-1].any()


def test_trim_context_drops_oldest_with_a_warning():
  ctx = [_turn(2, 5), _turn(2, 5), _turn(2, 5)]  # 8 rows each
  cur = _turn(4, None)
  assert trim_context(ctx, cur, max_rows=100) == ctx
  with pytest.warns(ContextTrimmed, match="dropped the 2 oldest of 3"):
    kept = trim_context(ctx, cur, max_rows=20, reserve=4)
  assert kept == ctx[2:]
  with pytest.raises(ValueError, match="holds 5"):
    trim_context(ctx, _turn(8, None), max_rows=5)


def test_conversation_rows_and_pack_keep_segments_apart():
  a = conversation_rows([_turn(2, 3), _turn(2, 2, trained=True)], 3)
  b = conversation_rows([_turn(3, 1)], 3)
  assert a["positions"][-1] == len(a["positions"]) - 1
  p = pack([a, b], 20)
  na, nb = len(a["positions"]), len(b["positions"])
  np.testing.assert_array_equal(p["segment_ids"][:na], 1)
  np.testing.assert_array_equal(p["segment_ids"][na:na + nb], 2)
  np.testing.assert_array_equal(p["segment_ids"][na + nb:], 0)
  assert p["positions"][na] == 0
  np.testing.assert_array_equal(p["loss_mask"][:na], a["loss_mask"])
