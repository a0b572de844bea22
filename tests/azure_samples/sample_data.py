"""Local data of the same shape as what Microsoft's four ParallelRunStep samples download.

``run_samples.py`` replaces each sample cell that downloads data or a model with a call to one
of these functions, so a sample runs offline here. Everything is made on this machine: digit
images from scikit-learn's bundled digits, a TF1-style checkpoint trained on them, iris as a
CSV with a pickled classifier, small audio-like files in folders, and a table shaped like the
orange-juice sales data.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

#: The iris sample's column names (the blob copy of iris it reads has these four).
IRIS_COLUMNS = ["sepal.length", "sepal.width", "petal.length", "petal.width"]
#: The orange-juice sales data's columns, in its order.
OJ_COLUMNS = [
    "WeekStarting", "Store", "Brand", "Quantity", "logQuantity", "Advert", "Price", "Age60",
    "COLLEGE", "INCOME", "Hincome150", "Large HH", "Minorities", "WorkingWoman", "SSTRDIST",
    "SSTRVOL", "CPDIST5", "CPWVOL5",
]  # fmt: skip
#: The per-folder sample's four genres, each a folder holding ``<genre>.wav``.
GENRES = ("disco", "orchestra", "piano", "spirituality")


def mnist_images(folder: str | Path, seed: int = 0) -> dict[str, int]:
    """Write the digits that :func:`train_mnist_checkpoint` holds out from training as 28×28
    grayscale PNGs ``folder/mnist/0.png``, ``1.png``, ... (the names the mnist sample's blob
    folder has), so the accuracy measures the model on digits it never saw; returns each
    file name's label."""
    from PIL import Image
    from sklearn.model_selection import train_test_split

    from jupyter_parallelrun.demo.digits import _source_digits, render_digit

    target = Path(folder) / "mnist"
    target.mkdir(parents=True, exist_ok=True)
    digits, labels = _source_digits()
    # The split load_training_arrays makes with the same seed: its test part.
    _, held_out = train_test_split(
        np.arange(len(digits)), test_size=0.2, random_state=seed, stratify=labels
    )
    truth = {}
    for index, source in enumerate(held_out):
        Image.fromarray(render_digit(digits[source])).save(target / f"{index}.png")
        truth[f"{index}.png"] = int(labels[source])
    return truth


def train_mnist_checkpoint(model_dir: str | Path, epochs: int = 8, seed: int = 0) -> list[str]:
    """Train a small TF1-style network and save it as ``model_dir/mnist-tf.model*``.

    The graph has what the sample's ``digit_identification.py`` looks up: an input placeholder
    ``network/X`` of raw 0–255 gray levels, shape ``(None, 784)``, and the logits as
    ``network/output/MatMul`` (a bias-free last layer, so that tensor's arg max is the class).
    Returns the files written.
    """
    import tensorflow as tf

    from jupyter_parallelrun.demo.digits import load_training_arrays

    x_train, y_train, _, _ = load_training_arrays(seed=seed)
    x_train = (x_train.reshape(len(x_train), 784) * 255.0).astype(np.float32)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        with tf.compat.v1.name_scope("network"):
            x = tf.compat.v1.placeholder(tf.float32, shape=(None, 784), name="X")
            hidden = x / 255.0
            for width, name in ((300, "hidden1"), (100, "hidden2")):
                with tf.compat.v1.name_scope(name):
                    weights = tf.Variable(
                        tf.random.truncated_normal((int(hidden.shape[1]), width), stddev=0.05)
                    )
                    hidden = tf.nn.relu(tf.matmul(hidden, weights) + tf.Variable(tf.zeros(width)))
            with tf.compat.v1.name_scope("output"):
                weights = tf.Variable(tf.random.truncated_normal((100, 10), stddev=0.05))
                logits = tf.matmul(hidden, weights, name="MatMul")
        y = tf.compat.v1.placeholder(tf.int64, shape=(None,))
        loss = tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
        )
        train = tf.compat.v1.train.AdamOptimizer(1e-3).minimize(loss)
        saver = tf.compat.v1.train.Saver()
        with tf.compat.v1.Session(graph=graph) as session:
            session.run(tf.compat.v1.global_variables_initializer())
            order = np.random.default_rng(seed)
            for _ in range(epochs):
                shuffled = order.permutation(len(x_train))
                for start in range(0, len(shuffled), 64):
                    batch = shuffled[start : start + 64]
                    session.run(train, {x: x_train[batch], y: y_train[batch]})
            saver.save(session, str(model_dir / "mnist-tf.model"))
    return sorted(p.name for p in model_dir.iterdir())


def iris_data(data_folder: str | Path, model_folder: str | Path) -> Path:
    """Write scikit-learn's bundled iris as ``data_folder/iris/iris.csv`` (the four measured
    columns) and a classifier trained on it as ``model_folder/iris_model.pkl``, predicting
    the variety's name. Returns the CSV's path."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris(as_frame=True)
    features = iris.data.set_axis(IRIS_COLUMNS, axis=1)
    names = np.array([name.capitalize() for name in iris.target_names])[iris.target]
    csv = Path(data_folder) / "iris" / "iris.csv"
    csv.parent.mkdir(parents=True, exist_ok=True)
    features.to_csv(csv, index=False)
    model = LogisticRegression(max_iter=1000).fit(features, names)
    Path(model_folder).mkdir(parents=True, exist_ok=True)
    with open(Path(model_folder) / "iris_model.pkl", "wb") as handle:
        pickle.dump(model, handle)
    return csv


def genre_files(folder: str | Path, seed: int = 0) -> dict[str, int]:
    """Write ``folder/<genre>/<genre>.wav`` for the four genres, each a short WAV file of a
    different length; returns each genre's file size."""
    import wave

    rng = np.random.default_rng(seed)
    sizes = {}
    for index, genre in enumerate(GENRES):
        path = Path(folder) / genre / f"{genre}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = (rng.standard_normal(4000 * (index + 1)) * 3000).astype("<i2")
        with wave.open(str(path), "wb") as sound:
            sound.setnchannels(1)
            sound.setsampwidth(2)
            sound.setframerate(8000)
            sound.writeframes(samples.tobytes())
        sizes[genre] = path.stat().st_size
    return sizes


def oj_sales(path: str | Path, stores: int = 6, weeks: int = 15, seed: int = 0) -> Path:
    """Write a CSV shaped like the orange-juice sales data (its columns, a date column, three
    brands per store, store-level demographics) to ``path``."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for store in range(2, 2 + stores):
        demographics = rng.random(10)
        income = 10.0 + rng.random()
        for brand in ("dominicks", "minute.maid", "tropicana"):
            for week in pd.date_range("1990-06-14", periods=weeks, freq="7D"):
                quantity = int(rng.integers(1000, 40000))
                rows.append(
                    [week.strftime("%Y-%m-%d"), store, brand, quantity, round(np.log(quantity), 6),
                     int(rng.integers(0, 2)), round(1 + 2 * rng.random(), 2),
                     *demographics[:2].round(6), round(income, 6), *demographics[2:].round(6)]
                )  # fmt: skip
    pd.DataFrame(rows, columns=OJ_COLUMNS).to_csv(path, index=False)
    return Path(path)
