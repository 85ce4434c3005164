"""Debug CSM: a few million parameters that train on 2 CPU cores in minutes.

Run:  python -m csm_jax.train --config=configs/debug.py --workdir=/tmp/csm_debug
Override any field: --config.train.steps=50 or configs/debug.py:train.steps=50
"""

from csm_jax.config import preset


def get_config(arg=None):
  return preset(
      "debug", arg,
      # The model's CER was still falling with steps (docs/text_stream.md:
      # 0.42 at 1,000, 0.27 at 1,500, 0.20 at 2,500); 2,500 keep the whole
      # job within about half an hour on 2 cores from scratch.
      train__steps=2500, train__lr=1e-3, train__warmup_steps=20,
      train__log_every=10, train__eval_every=500, train__ckpt_every=500,
      model__text_loss_weight=0.1, model__decoder_frame_fraction=0.25,
      model__text_window=64, model__audio_window=256, model__max_seq_len=512,
      # 4 + 2 layers compile in seconds unrolled, and without the layer
      # scan's stacked residual buffers the CPU step is ~13% faster.
      model__scan_layers=False,
      data__seq_len=512, data__batch_size=4,
      # The spectral codec's recipe (configs/codec_debug.py): CPU minutes
      # of codec training on first run.
      data__codec_steps=3600,
      # A model that says its text (docs/text_stream.md): eSpeak's phonemes
      # laid on the frames they are spoken in, the text two rows ahead of
      # the audio, each row also showing the two tokens after its own;
      # every turn's audio trains (context turns too), on the 3-hour corpus
      # (on the 1-hour one the model learns its sentences by heart).
      data__tokenizer_type="phoneme", model__text_stream="aligned",
      data__loss_on="all_audio", data__corpus_size="medium",
      # Each turn's emotion as a tag row: on this corpus it sets the
      # speaking rate (0.78x-1.25x), which an untold model guesses, and
      # misses the recording's length when it guesses wrong.
      model__emotion_tag=True)
