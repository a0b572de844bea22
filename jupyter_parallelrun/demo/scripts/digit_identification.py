"""Entry script of the demo batch job: identify the handwritten digit in each PNG file.

Written as Azure ML's ``digit_identification.py`` tutorial script, with
``from jupyter_parallelrun import Model`` in place of ``from azureml.core import Model``.
``init()`` loads the registered model ``mnist`` once per worker process; ``run(mini_batch)``
scores a list of image files in one batched call and returns one ``"<file name>,<digit>"`` row
per image, so that the append_row output reads as a header-less CSV.
"""

from __future__ import annotations

import os

# Keep TensorFlow's start-up notices out of the worker logs: its C++ logs below warnings, and
# the absl and oneDNN lines that TensorFlow 2.19+ prints while it is imported, before that
# setting applies (tensorflow/tensorflow#100442), by pointing stderr at /dev/null meanwhile.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_stderr, _null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 2)
try:
    import keras  # noqa: E402
finally:
    os.dup2(_stderr, 2)
    os.close(_stderr)
    os.close(_null)
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from jupyter_parallelrun import EntryScript, Model  # noqa: E402

g_model = None


def _model_file(model_path: str) -> str:
    # A model registered from a folder comes back as that folder: use the .keras file in it.
    if os.path.isdir(model_path):
        for root, _, files in os.walk(model_path):
            for name in sorted(files):
                if name.endswith(".keras"):
                    return os.path.join(root, name)
        raise FileNotFoundError(f"no .keras model file in {model_path!r}")
    return model_path


def init() -> None:
    """Load the registered ``mnist`` model, once per worker process."""
    global g_model
    model_path = Model.get_model_path("mnist")
    g_model = keras.models.load_model(_model_file(model_path))


def run(mini_batch: list[str]) -> list[str]:
    """Predict the digit of every readable image in ``mini_batch``.

    Parameters
    ----------
    mini_batch : list of str
        Paths of 28×28 grayscale PNG files.

    Returns
    -------
    list of str
        ``"<file name>,<predicted digit>"`` for each image that could be read. A file that
        cannot be read is logged and left out, so it counts as one failed item.
    """
    names, images = [], []
    for path in mini_batch:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
            if pixels.shape != (28, 28):
                raise ValueError(f"image is {pixels.shape[1]}x{pixels.shape[0]}, not 28x28")
        except Exception as error:  # one unreadable file must not fail the whole mini-batch
            EntryScript().logger.warning("skipped %s: %s: %s", path, type(error).__name__, error)
            continue
        names.append(os.path.basename(path))
        images.append(pixels[:, :, np.newaxis])
    if not images:
        return []
    scores = g_model.predict_on_batch(np.stack(images))
    return [f"{name},{digit}" for name, digit in zip(names, np.argmax(scores, axis=1), strict=True)]
