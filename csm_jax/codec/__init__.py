"""Streaming neural audio codec (SEANet + windowed transformer + split RVQ), Mimi-shaped.

  config.codec_config(size)            sizes "debug", "base", "mimi"
  model.Codec / model.init_codec       encode(audio) -> codes, decode(codes)
  api.encode / api.decode              jitted, validated, on nnx.split(codec)
  api.StreamingEncoder / Decoder       chunked, equal to offline
  task.CodecTask                       GAN training with the shared trainer
  io.save_codec / load_codec           self-describing codec directory
  io.load_any                          codec dir, codec run or CSM workdir
  inputs.read_audio                    the codec's policy for odd input files
  report.evaluate                      metrics per level count + mel plot
  python -m csm_jax.codec ...          init / encode / decode / roundtrip /
                                       evaluate / bench
"""
