"""Handwritten digit images for the demo, made offline from scikit-learn's bundled digits.

scikit-learn ships 1797 handwritten digits as 8×8 arrays of values 0–16
(:func:`sklearn.datasets.load_digits`); nothing is downloaded. They are rendered here the way
MNIST draws its digits: scaled to 0–255, resized to a 20×20 box and centred on a 28×28 black
canvas. :func:`make_digit_images` writes them as PNG files for the batch job to score and
:func:`load_training_arrays` gives the same renderings as arrays to train the model on, so that
the model sees exactly what the entry script reads back from a PNG. :func:`split_digits`
splits the 1797 digits once: the model trains on one part, and the images are drawn from the
other, held-out part, so the batch job scores handwriting the model never saw.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SIZE = 28
#: The digit fills a 20×20 box centred in the 28×28 image, as in MNIST, so that a shifted
#: copy moves the strokes without cutting them off.
DIGIT_BOX = 20
LABELS_FILE = "labels.csv"
#: How each pass over the 1797 source digits differs from the ones before: pass ``k`` moves
#: the digit by ``SHIFTS[k % len(SHIFTS)]`` pixels and dims it by 4 % per full round of shifts.
SHIFTS: tuple[tuple[int, int], ...] = (
    (0, 0),
    (1, 0),
    (0, 1),
    (-1, 0),
    (0, -1),
    (1, 1),
    (-1, -1),
    (1, -1),
    (-1, 1),
)


#: Share of the 1797 digits held out of training.
TEST_FRACTION = 0.2


def _source_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target.astype(np.int64)


def split_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and the held-out digits among the 1797 (stratified by label).

    Parameters
    ----------
    seed : int, default 0
        Seed of the split; :func:`load_training_arrays` and :func:`make_digit_images` given the
        same seed use the same split.

    Returns
    -------
    train, held_out : numpy.ndarray
        Indices into :func:`sklearn.datasets.load_digits`: 1437 and 360 of them.
    """
    from sklearn.model_selection import train_test_split

    _, labels = _source_digits()
    train, held_out = train_test_split(
        np.arange(len(labels)), test_size=TEST_FRACTION, random_state=seed, stratify=labels
    )
    return train, held_out


def render_digit(
    digit: np.ndarray, shift: tuple[int, int] = (0, 0), intensity: float = 1.0
) -> np.ndarray:
    """Render one 8×8 scikit-learn digit as a 28×28 8-bit grayscale image.

    Parameters
    ----------
    digit : numpy.ndarray
        An 8×8 array of values 0–16, as in ``load_digits().images``.
    shift : tuple of int, default (0, 0)
        Pixels to move the digit right and down (negative: left and up).
    intensity : float, default 1.0
        Factor applied to the brightness, in (0, 1].

    Returns
    -------
    numpy.ndarray
        A ``(28, 28)`` ``uint8`` array, white strokes on black as in MNIST.
    """
    scaled = np.clip(np.asarray(digit, dtype=np.float64) * (255.0 / 16.0) * intensity, 0, 255)
    small = Image.fromarray(scaled.round().astype(np.uint8))
    box = small.resize((DIGIT_BOX, DIGIT_BOX), Image.Resampling.BICUBIC)
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE), 0)
    offset = (IMAGE_SIZE - DIGIT_BOX) // 2
    canvas.paste(box, (offset + shift[0], offset + shift[1]))
    return np.asarray(canvas, dtype=np.uint8)


def _variant(pass_index: int) -> tuple[tuple[int, int], float]:
    rounds, position = divmod(pass_index, len(SHIFTS))
    return SHIFTS[position], max(0.2, 1.0 - 0.04 * rounds)


def to_model_input(images: np.ndarray) -> np.ndarray:
    """Turn 28×28 ``uint8`` images into the model's input: ``float32`` in [0, 1], one channel.

    This is the preprocessing the entry script applies to each PNG file it reads.

    Parameters
    ----------
    images : numpy.ndarray
        ``(n, 28, 28)`` or ``(28, 28)`` array of 8-bit gray levels.

    Returns
    -------
    numpy.ndarray
        ``(n, 28, 28, 1)`` (or ``(28, 28, 1)``) ``float32`` array.
    """
    return (np.asarray(images, dtype=np.float32) / 255.0)[..., np.newaxis]


def make_digit_images(
    folder: str | Path, count: int = 3000, seed: int = 0, split_seed: int | None = 0
) -> Path:
    """Write ``count`` handwritten digit images as PNG files, with their labels.

    The images are drawn from the 360 digits held out of training by ``split_digits(split_seed)``
    (all 1797 of :func:`sklearn.datasets.load_digits` with ``split_seed=None``), in an order
    shuffled by ``seed``; once all are used, they are used again, each further pass moved by a
    pixel (and, after nine passes, slightly dimmed) so that no two files are the same.

    Parameters
    ----------
    folder : str or pathlib.Path
        Where to write; created if missing. Files already there with the same names are
        replaced.
    count : int, default 3000
        Number of images, at least 1.
    seed : int, default 0
        Seed of the order in which the source digits are drawn.
    split_seed : int or None, default 0
        The seed the model is trained with (:func:`load_training_arrays`,
        ``train_digit_model``): only the digits that split holds out are drawn, so none of
        the images shows a digit the model was trained on. None draws from all 1797.

    Returns
    -------
    pathlib.Path
        The folder, holding ``digit_00000.png`` … and ``labels.csv`` (columns ``file,label``).

    Examples
    --------
    >>> folder = make_digit_images("images", count=100)     # doctest: +SKIP
    >>> sorted(folder.glob("*.png"))[0].name                  # doctest: +SKIP
    'digit_00000.png'
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive int; got {count!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    digits, labels = _source_digits()
    pool = np.arange(len(digits)) if split_seed is None else split_digits(split_seed)[1]
    order = pool[np.random.default_rng(seed).permutation(len(pool))]
    width = max(5, len(str(count - 1)))
    rows = []
    for index in range(count):
        pass_index, position = divmod(index, len(order))
        source = order[position]
        shift, intensity = _variant(pass_index)
        name = f"digit_{index:0{width}d}.png"
        image = render_digit(digits[source], shift, intensity)
        Image.fromarray(image).save(folder / name)
        rows.append((name, int(labels[source])))
    with open(folder / LABELS_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("file", "label"))
        writer.writerows(rows)
    return folder


def load_training_arrays(
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training and test arrays rendered exactly like the PNG files of :func:`make_digit_images`.

    The 1797 digits are split by :func:`split_digits` into a training part and a held-out
    part. The training part is given in all nine one-pixel shifts that the image files can
    carry, so that the model knows them; the held-out part is given unshifted, as the test
    set. The demo's images are drawn from the same held-out part.

    Parameters
    ----------
    seed : int, default 0
        Seed of the split.

    Returns
    -------
    x_train, y_train, x_test, y_test : numpy.ndarray
        Images as ``(n, 28, 28, 1)`` ``float32`` in [0, 1] (see :func:`to_model_input`),
        labels as ``(n,)`` ``int64`` digits 0–9.
    """
    digits, labels = _source_digits()
    train_idx, test_idx = split_digits(seed)
    x_train = np.stack([render_digit(digits[i], shift) for shift in SHIFTS for i in train_idx])
    y_train = np.tile(labels[train_idx], len(SHIFTS))
    x_test = np.stack([render_digit(digits[i]) for i in test_idx])
    return to_model_input(x_train), y_train, to_model_input(x_test), labels[test_idx]
