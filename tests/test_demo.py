"""The digit demo: its images, its model, its entry script, and the whole job end to end."""

from __future__ import annotations

import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jupyter_parallelrun import Model, Workspace
from jupyter_parallelrun.demo import (
    SCRIPTS_FOLDER,
    evaluate_digit_model,
    load_training_arrays,
    make_digit_images,
    train_digit_model,
)
from jupyter_parallelrun.demo.digits import split_digits, to_model_input

pytest.importorskip("keras")


def read_labels(folder: Path) -> list[tuple[str, int]]:
    with open(folder / "labels.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["file", "label"]
    return [(name, int(label)) for name, label in rows[1:]]


@pytest.fixture(scope="module")
def quick_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained for one epoch: enough to score digits, quick enough for every run."""
    return train_digit_model(tmp_path_factory.mktemp("model"), epochs=1)


def load_entry_script():
    spec = importlib.util.spec_from_file_location(
        "digit_identification_under_test", SCRIPTS_FOLDER / "digit_identification.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_digit_images_writes_28x28_gray_pngs_and_their_labels(tmp_path: Path) -> None:
    folder = make_digit_images(tmp_path / "images", count=40, seed=1)

    pngs = sorted(folder.glob("*.png"))
    labels = read_labels(folder)
    assert len(pngs) == 40
    assert [name for name, _ in labels] == [p.name for p in pngs]
    assert pngs[0].name == "digit_00000.png"
    assert {label for _, label in labels} <= set(range(10))
    with Image.open(pngs[0]) as image:
        assert image.mode == "L"
        assert image.size == (28, 28)


def test_make_digit_images_beyond_the_source_digits_are_all_different(tmp_path: Path) -> None:
    held_out = len(split_digits()[1])
    folder = make_digit_images(tmp_path, count=held_out * 9 + 5)

    pixels = {Image.open(p).tobytes() for p in folder.glob("*.png")}
    assert len(pixels) == held_out * 9 + 5
    labels = dict(read_labels(folder))
    assert labels[f"digit_{held_out:05d}.png"] == labels["digit_00000.png"]


def test_images_show_only_digits_held_out_of_training(tmp_path: Path) -> None:
    train_idx, held_out_idx = split_digits()
    x_train, _, x_test, _ = load_training_arrays()
    folder = make_digit_images(tmp_path, count=len(held_out_idx) * 2)

    assert not set(train_idx) & set(held_out_idx)
    assert len(train_idx) + len(held_out_idx) == 1797 and len(x_test) == len(held_out_idx)
    trained_on = {image.tobytes() for image in x_train}
    files = [to_model_input(np.asarray(Image.open(p).convert("L"))) for p in folder.glob("*.png")]
    assert not [f for f in files if f.tobytes() in trained_on]
    # every held-out digit is among the images, unshifted, in the first pass
    assert {image.tobytes() for image in x_test} <= {f.tobytes() for f in files}
    everything = make_digit_images(tmp_path / "all", count=1797, split_seed=None)
    assert sum(
        to_model_input(np.asarray(Image.open(p).convert("L"))).tobytes() in trained_on
        for p in everything.glob("*.png")
    ) == len(train_idx)


def test_make_digit_images_is_deterministic(tmp_path: Path) -> None:
    first = make_digit_images(tmp_path / "a", count=20, seed=3)
    second = make_digit_images(tmp_path / "b", count=20, seed=3)

    assert read_labels(first) == read_labels(second)
    assert (first / "digit_00007.png").read_bytes() == (second / "digit_00007.png").read_bytes()


def test_make_digit_images_rejects_a_bad_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="count must be a positive int; got 0"):
        make_digit_images(tmp_path, count=0)


def test_training_arrays_match_what_the_entry_script_reads_from_a_png(tmp_path: Path) -> None:
    x_train, y_train, x_test, y_test = load_training_arrays()
    folder = make_digit_images(tmp_path, count=1797)

    assert x_train.shape[1:] == x_test.shape[1:] == (28, 28, 1)
    assert x_train.dtype == np.float32 and x_train.min() >= 0.0 and x_train.max() <= 1.0
    assert len(x_train) == len(y_train) and len(x_test) == len(y_test)
    # Every unshifted test image is one of the files, pixel for pixel, once read back.
    files = {
        to_model_input(np.asarray(Image.open(p).convert("L"))).tobytes()
        for p in folder.glob("*.png")
    }
    assert all(image.tobytes() in files for image in x_test)


@pytest.mark.slow
def test_trained_model_identifies_held_out_digits(tmp_path: Path) -> None:
    model_file = train_digit_model(tmp_path)

    assert model_file == tmp_path / "digit_model.keras"
    assert evaluate_digit_model(model_file) > 0.9


def test_entry_script_scores_images_and_skips_an_unreadable_file(
    tmp_path: Path, quick_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.create("demo-test", path=tmp_path / "ws")
    Model.register(workspace=ws, model_path=quick_model, model_name="mnist")
    monkeypatch.delenv("PARALLELRUN_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path / "ws")
    folder = make_digit_images(tmp_path / "images", count=30)
    broken = folder / "digit_broken.png"
    broken.write_bytes(b"not a png")
    mini_batch = [str(p) for p in sorted(folder.glob("digit_000*.png"))] + [str(broken)]

    script = load_entry_script()
    script.init()
    rows = script.run(mini_batch)

    assert len(rows) == 30
    predicted = dict(row.split(",") for row in rows)
    labels = dict(read_labels(folder))
    assert set(predicted) == set(labels)
    correct = sum(int(predicted[name]) == label for name, label in labels.items())
    assert correct >= 20
    assert script.run([str(broken)]) == []


def test_entry_script_finds_the_model_file_in_a_registered_folder(
    tmp_path: Path, quick_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.create("demo-test", path=tmp_path / "ws")
    Model.register(workspace=ws, model_path=quick_model.parent, model_name="mnist")
    monkeypatch.delenv("PARALLELRUN_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path / "ws")
    folder = make_digit_images(tmp_path / "images", count=3)

    script = load_entry_script()
    script.init()

    assert len(script.run([str(p) for p in folder.glob("*.png")])) == 3


@pytest.mark.slow
def test_demo_command_prints_each_phase_as_it_happens_without_tensorflow_noise(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "jupyter_parallelrun.demo", "--workdir", str(workdir)]
        + ["--images", "300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    try:
        for line in demo.stdout:
            lines.append(line)
            if line.startswith("training the Keras CNN"):
                # said before the work, not after: nothing is trained yet
                assert demo.poll() is None
                assert (workdir / "images" / "labels.csv").is_file()
                assert not (workdir / "model" / "digit_model.keras").exists()
            if line.startswith("submitting the ParallelRunStep"):
                assert not list(workdir.glob("outputs/**/digit_outputs.txt"))
        assert demo.wait(timeout=600) == 0, "".join(lines)
    finally:
        demo.kill()
    text = "".join(lines)
    phases = [
        "rendering 300 digit images (28x28 PNG) from the 360 scikit-learn digits held out",
        "  written in ",
        "training the Keras CNN on the other 1437 digits",
        "  trained in ",
        "registering the model 'mnist'",
        "submitting the ParallelRunStep 'predict-digits': 300 images",
        "predict-digits: ",  # the live progress line
        "Run digit_identification_",
        "status           Completed",
    ]
    at = [text.find(phase) for phase in phases]
    assert -1 not in at and at == sorted(at), list(zip(phases, at, strict=True))
    assert "images           300  (done 300, failed 0)" in text
    assert "mini-batches     3  (failed 0)" in text
    assert "output rows      300  (duplicates 0, missing 0, unknown 0)" in text
    assert "on images of held-out digits only, none trained on" in text
    assert text.rstrip().endswith("PASSED")
    for noise in ("absl::InitializeLog", "oneDNN", "TF_ENABLE_ONEDNN_OPTS", "cuda"):
        assert noise not in text
        for log in workdir.glob(".parallelrun/runs/*/logs/workers/*.txt"):
            assert noise not in log.read_text(), log
