"""A/B listening test (CMOS, Experiment 3): pairs, web app, answers, analysis.

``pairs`` defines the pairs directory, ``protocol`` the scale and the plan
of one rater session, ``store`` the SQLite database, ``server`` and
``pages`` the web app, ``analysis`` and ``report`` the statistics. The
command line is ``python -m csm_jax.listen``; the guide is docs/listening.md.
"""


from csm_jax.config.errors import UserError


class ListeningError(UserError, ValueError):
  """Bad input for the listening test; the message names the file or field."""
