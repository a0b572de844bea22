"""Listing local folders: a ``Listings`` object shares each folder's reading among the listings
given it, and nothing is shared otherwise (there is no process-wide switch)."""

from __future__ import annotations

from jupyter_parallelrun import Dataset, Datastore
from jupyter_parallelrun.storage import Listings, iter_local_files


def _names(paths) -> list[str]:
    return [path.rsplit("/", 1)[1] for path in paths]


def test_the_listings_given_one_object_read_each_folder_once(tmp_path):
    folder = tmp_path / "images"
    (folder / "nested").mkdir(parents=True)
    for name in ("a.png", "b.png", "nested/c.png"):
        (folder / name).write_text(name)
    listings = Listings()
    first = iter_local_files(str(folder), listings)
    assert next(first).endswith("/a.png")  # the folder is read now
    (folder / "aa.png").write_text("added while the first listing runs")
    (folder / "nested" / "d.png").write_text("added before its folder was read")
    # Every listing given the same object sees the files of the same reading of a folder.
    assert _names(first) == ["b.png", "c.png", "d.png"]
    assert _names(iter_local_files(str(folder / "*.png"), listings)) == ["a.png", "b.png"]
    # Without it, or with another one, a folder is read anew.
    assert _names(iter_local_files(str(folder / "*.png"))) == ["a.png", "aa.png", "b.png"]
    assert _names(iter_local_files(str(folder), Listings())) == [
        "a.png",
        "aa.png",
        "b.png",
        "c.png",
        "d.png",
    ]


def test_a_dataset_lists_its_folders_through_its_listings(ws, tmp_path):
    local = tmp_path / "local"
    local.mkdir()
    (local / "one.txt").write_text("1")
    store = Datastore.register_local_folder(ws, "shared", str(tmp_path / "store"))
    (tmp_path / "store" / "texts").mkdir(parents=True)
    (tmp_path / "store" / "texts" / "two.txt").write_text("2")
    dataset = Dataset.File.from_files([str(local), (store, "texts")])
    dataset.listings = Listings()
    before = dataset.fingerprint()
    (local / "one_more.txt").write_text("3")
    (tmp_path / "store" / "texts" / "two_more.txt").write_text("4")
    # Its listings (the files, the fingerprint) see the folders as first read, on a local path
    # and on a datastore alike.
    assert _names(dataset.iter_files()) == ["one.txt", "two.txt"]
    assert dataset.fingerprint() == before
    anew = Dataset.File.from_files([str(local), (store, "texts")])
    assert anew.listings is None
    assert _names(anew.iter_files()) == ["one.txt", "one_more.txt", "two.txt", "two_more.txt"]
    assert anew.fingerprint() != before
