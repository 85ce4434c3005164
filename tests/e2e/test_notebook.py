"""launch/colab.ipynb runs headlessly on CPU with small settings."""

import os

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(__file__)))


def test_colab_notebook_executes(tmp_path, monkeypatch):
  monkeypatch.setenv("CSM_NOTEBOOK_SMALL", "1")
  monkeypatch.setenv("CSM_WORKDIR", str(tmp_path / "run"))
  monkeypatch.setenv("CSM_DATA_DIR", str(tmp_path / "data"))
  monkeypatch.setenv("CSM_CONFIG", os.path.join(ROOT, "configs", "debug.py"))
  nb = nbformat.read(os.path.join(ROOT, "launch", "colab.ipynb"), as_version=4)
  client = NotebookClient(nb, timeout=900, kernel_name="python3",
                          resources={"metadata": {"path": ROOT}})
  client.execute()
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  images = [o for o in outputs if "image/png" in o.get("data", {})]
  assert len(images) >= 2  # loss curve and spectrogram
  text = "".join(o.get("text", "") for o in outputs)
  assert "s of audio in" in text
