"""Task registry: ``config.task`` name -> Task instance."""

from __future__ import annotations

from csm_jax.training.task import Task


def make_task(config) -> Task:
  if config.task == "csm":
    from csm_jax.model.task import CSMTask  # pylint: disable=g-import-not-at-top
    return CSMTask(config)
  if config.task == "codec":
    from csm_jax.codec.task import CodecTask  # pylint: disable=g-import-not-at-top
    from csm_jax.data import corpus  # pylint: disable=g-import-not-at-top

    class CorpusCodecTask(CodecTask):
      """The codec task reading turn audio of the configured corpus."""

      def prepare(self, workdir):
        del workdir
        corpus.ensure_corpus(config)

    sr = config.codec.sample_rate
    return CorpusCodecTask(config,
                           corpus.CorpusClips(config, "train", sr),
                           corpus.CorpusClips(config, "validation", sr))
  raise ValueError(f"config.task: unknown task {config.task!r}")
