"""Train the demo's digit classifier: a small Keras CNN, on the CPU, in seconds.

The model takes ``(28, 28, 1)`` ``float32`` images in [0, 1] (see
:func:`~jupyter_parallelrun.demo.digits.to_model_input`) and gives the scores of the ten digits.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from .digits import load_training_arrays

MODEL_FILE = "digit_model.keras"


def train_digit_model(
    output_dir: str | Path, epochs: int = 4, seed: int = 0, verbose: int = 0
) -> Path:
    """Train the digit CNN on the rendered scikit-learn digits and save it.

    Conv 16 → MaxPool → Conv 32 → MaxPool → Flatten → Dense 64 → Dense 10, trained with Adam
    on the training part of :func:`~jupyter_parallelrun.demo.digits.load_training_arrays`.
    Seeds are set so that a second call with the same ``seed`` trains the same model.

    Parameters
    ----------
    output_dir : str or pathlib.Path
        Folder to save ``digit_model.keras`` in; created if missing.
    epochs : int, default 4
        Passes over the training data; the default reaches about 0.97 test accuracy.
    seed : int, default 0
        Seed of the data split, the weight initialisation and the shuffling.
    verbose : int, default 0
        Keras' verbosity for ``fit`` (0 silent, 1 progress bar, 2 one line per epoch).

    Returns
    -------
    pathlib.Path
        The saved model file; :func:`evaluate_digit_model` measures its test accuracy.

    Examples
    --------
    >>> model_file = train_digit_model("models")            # doctest: +SKIP
    >>> model_file.name                                       # doctest: +SKIP
    'digit_model.keras'
    """
    # TensorFlow is an optional extra (``[demo]``) and takes seconds to import: only here.
    keras, tf = import_tensorflow()

    _use_all_cores(tf)
    keras.utils.set_random_seed(seed)
    x_train, y_train, _, _ = load_training_arrays(seed=seed)
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ],
        name="digit_cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=64, epochs=epochs, shuffle=True, verbose=verbose)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model_path = output_dir / MODEL_FILE
    model.save(model_path)
    return model_path


def evaluate_digit_model(model_path: str | Path, seed: int = 0) -> float:
    """Accuracy of a saved digit model on the held-out digits of the split made with ``seed``.

    Parameters
    ----------
    model_path : str or pathlib.Path
        A model saved by :func:`train_digit_model`.
    seed : int, default 0
        The seed the model was trained with, so that the test digits are the held-out ones.

    Returns
    -------
    float
        Share of test digits classified right, in [0, 1].
    """
    keras, _ = import_tensorflow()
    _, _, x_test, y_test = load_training_arrays(seed=seed)
    model = keras.models.load_model(model_path)
    predicted = model.predict_on_batch(x_test).argmax(axis=1)
    return float((predicted == y_test).mean())


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send what native code writes to file descriptor 2 to /dev/null meanwhile.

    TensorFlow 2.19 and later print absl and oneDNN notices while they are imported, before
    ``TF_CPP_MIN_LOG_LEVEL`` applies (tensorflow/tensorflow#100442). Python's own errors are
    unaffected: an import that fails raises after stderr is back.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def import_tensorflow():
    """``(keras, tensorflow)``, imported without their start-up notices on stderr."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # later C++ info and warnings too
    with native_stderr_silenced():
        import keras
        import tensorflow as tf
    return keras, tf


def _use_all_cores(tf) -> None:
    # Thread pools can only be sized before TensorFlow first runs an op; later it raises.
    cores = os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(min(2, cores))
    except RuntimeError:
        pass
