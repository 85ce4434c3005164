"""Writes launch/colab.ipynb (kept as code so the notebook diff stays readable).

Run: python launch/make_colab.py
"""

import os

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = os.path.dirname(os.path.abspath(__file__))

CELLS = [
    new_markdown_cell(
        "# csm-jax in Colab\n\n"
        "Builds the embedded multi-speaker dialogue corpus, trains the debug "
        "codec and CSM on it, plots the losses and speaks a reply in a "
        "conversation. On a Colab CPU the small settings below take a few "
        "minutes; raise `CSM_STEPS` for a model that sounds better."),
    new_code_cell(
        "# Install from a checkout of this repository (in Colab: upload or\n"
        "# clone it, then %cd into it). Skipped when csm_jax is installed.\n"
        "import importlib.util, os, subprocess, sys\n"
        "if importlib.util.find_spec('csm_jax') is None:\n"
        "    repo = os.environ.get('CSM_REPO', '.')\n"
        "    subprocess.run([sys.executable, '-m', 'pip', 'install', '-q', '-e',\n"
        "                    repo], check=True)",
        metadata={"tags": ["install"]}),
    new_code_cell(
        "import os, json\n"
        "import numpy as np\n"
        "import matplotlib.pyplot as plt\n"
        "from csm_jax.config import make_config\n"
        "from csm_jax.config.presets import apply_overrides\n"
        "from csm_jax.training.run import train_and_evaluate\n"
        "\n"
        "WORKDIR = os.environ.get('CSM_WORKDIR', '/content/csm_run')\n"
        "SMALL = os.environ.get('CSM_NOTEBOOK_SMALL') == '1'  # set by tests\n"
        "CSM_STEPS = 4 if SMALL else 300\n"
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('debug', os.environ.get(\n"
        "    'CSM_CONFIG', 'configs/debug.py'))\n"
        "cfg_mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(cfg_mod)\n"
        "config = cfg_mod.get_config(\n"
        "    f'train.steps={CSM_STEPS},train.eval_every={CSM_STEPS}' +\n"
        "    (',data.corpus_size=tiny,data.codec_steps=6,data.seq_len=192,'\n"
        "     'data.batch_size=2,train.log_every=2,train.ckpt_every=2' if SMALL else ''))\n"
        "if os.environ.get('CSM_DATA_DIR'):\n"
        "    config.data.data_dir = os.environ['CSM_DATA_DIR']\n"
        "print(config.model.backbone, config.data.corpus_size)"),
    new_markdown_cell("## Train (corpus, codec and tokenizer are built on first run)"),
    new_code_cell("result = train_and_evaluate(config, WORKDIR)\nresult['step'], result['loss']"),
    new_markdown_cell("## Loss curves"),
    new_code_cell(
        "rows = [json.loads(l) for l in open(os.path.join(WORKDIR, 'metrics.jsonl'))]\n"
        "train = [r for r in rows if 'loss' in r]\n"
        "fig, ax = plt.subplots(figsize=(7, 3))\n"
        "for key in ('loss', 'loss/cb0', 'loss/decoder'):\n"
        "    ax.plot([r['step'] for r in train], [r[key] for r in train], label=key)\n"
        "ax.set_xlabel('step'); ax.set_ylabel('cross-entropy (nats)'); ax.legend()\n"
        "ax.set_title('CSM training loss'); plt.show()"),
    new_markdown_cell("## Speak a reply in a conversation"),
    new_code_cell(
        "from csm_jax.inference.loading import load_generator\n"
        "from csm_jax.inference.generator import ContextTurn, Sampling\n"
        "gen = load_generator(WORKDIR)\n"
        "sr = gen.codec.sample_rate\n"
        "from csm_jax.data.synthetic.espeak import synthesize\n"
        "prompt = synthesize('Did you see the match last night?', voice='en-us',\n"
        "                    sample_rate=sr)\n"
        "out = gen.generate('I did, what a finish that was!', 1,\n"
        "                   [ContextTurn(0, 'Did you see the match last night?', audio=prompt)],\n"
        "                   Sampling(max_seconds=1.0 if SMALL else 6.0))\n"
        "print(f\"{out['seconds']:.2f} s of audio in {out['compute_s']:.2f} s; \"\n"
        "      f\"first chunk after {out['first_chunk_s']:.2f} s\")"),
    new_code_cell(
        "from IPython.display import Audio, display\n"
        "import librosa, librosa.display\n"
        "audio = out['audio'] if len(out['audio']) else np.zeros(sr // 10, np.float32)\n"
        "display(Audio(audio, rate=sr))\n"
        "mel = librosa.power_to_db(librosa.feature.melspectrogram(\n"
        "    y=audio, sr=sr, n_fft=512, hop_length=160, n_mels=64), ref=np.max)\n"
        "fig, ax = plt.subplots(figsize=(7, 3))\n"
        "img = librosa.display.specshow(mel, sr=sr, hop_length=160, x_axis='time',\n"
        "                               y_axis='mel', ax=ax)\n"
        "fig.colorbar(img, ax=ax, format='%+2.0f dB'); ax.set_title('generated reply')\n"
        "plt.show()"),
]


def main():
  nb = new_notebook(cells=CELLS, metadata={
      "kernelspec": {"name": "python3", "display_name": "Python 3",
                     "language": "python"},
      "accelerator": "GPU"})
  path = os.path.join(HERE, "colab.ipynb")
  nbformat.write(nb, path)
  print("wrote", path)


if __name__ == "__main__":
  main()
