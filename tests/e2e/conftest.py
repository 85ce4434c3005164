"""The tiny trained run that the end-to-end tests share."""

import pytest

from tests.e2e.tiny_run import train_tiny_run


@pytest.fixture(scope="session")
def run(tmp_path_factory):
  return train_tiny_run(tmp_path_factory.mktemp("e2e"))
