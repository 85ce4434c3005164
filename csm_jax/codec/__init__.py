"""Streaming neural audio codec (SEANet + windowed transformer + split RVQ), Mimi-shaped.

  csm_jax.config.codec.codec_config    sizes "debug", "base", "mimi"
  model.Codec / model.init_codec       encode(audio) -> codes, decode(codes)
  api.encode / api.decode              jitted, validated, on nnx.split(codec)
  api.StreamingEncoder / Decoder       chunked, equal to offline
  handle.CodecHandle                   numpy in/out wrapper for data + generation
  io.save_codec / load_codec           self-describing codec directory
  inputs.read_audio                    the codec's policy for odd input files
  report.evaluate                      metrics per level count + mel plot
  python -m csm_jax.codec ...          init / encode / decode / roundtrip /
                                       evaluate

Its training task is ``csm_jax.training.tasks.codec``; opening a codec from a
training run is ``csm_jax.store.codecs.load_any``.
"""
