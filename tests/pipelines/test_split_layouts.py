"""Folders laid out by split (train/, val/, test/ holding class folders) are read as those splits."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from augpipe import pipelines
from augpipe.pipelines.synthetic import write_shapes_folder


@pytest.fixture(scope="module")
def split_folder(tmp_path_factory):
    """train/ with 4 shape classes x 12, test/ with the same classes x 5."""
    root = tmp_path_factory.mktemp("layout")
    write_shapes_folder(root / "train", per_class=12, seed=0)
    write_shapes_folder(root / "test", per_class=5, seed=1)
    return root


def count_files(folder):
    return sum(1 for p in folder.rglob("*") if p.is_file())


def test_a_train_and_test_folder_is_read_as_those_splits_not_as_two_classes(split_folder):
    # Found on main: train/ and test/ were read as two classes, the test images trained on, and run-mnist
    # reported the share of "train" files as its accuracy.
    source = pipelines.load_source(f"folder:{split_folder}", image_size=(16, 16))
    assert source.class_names == tuple(sorted(p.name for p in (split_folder / "train").iterdir()))
    assert len(source) == count_files(split_folder / "train")
    assert len(source.official_test.images) == count_files(split_folder / "test")
    assert "train/ + test/" in source.provenance
    splits = pipelines.make_splits(source, seed=0)
    assert len(splits.test) == count_files(split_folder / "test") and splits.test_is_official
    assert len(splits.train) + len(splits.val) == len(source)
    splits.check_disjoint()
    assert not {p for p in splits.test.images.paths} & {p for p in splits.train.images.paths}


def test_a_given_val_folder_is_the_val_split(split_folder, tmp_path):
    root = tmp_path / "with_val"
    shutil.copytree(split_folder, root)
    write_shapes_folder(root / "validation", per_class=3, seed=2)
    source = pipelines.load_source(f"folder:{root}", image_size=(16, 16))
    splits = pipelines.make_splits(source, seed=0)
    assert len(splits.val) == count_files(root / "validation") and len(splits.train) == len(source)


def test_class_indices_follow_the_training_classes_by_name(split_folder, tmp_path):
    root = tmp_path / "fewer"
    shutil.copytree(split_folder, root)
    missing = sorted((root / "test").iterdir())[0]
    shutil.rmtree(missing)  # the test set lacks a class: fine, it is trained and reported
    source = pipelines.load_source(f"folder:{root}", image_size=(16, 16))
    assert len(source.class_names) == 4 and 0 not in set(source.official_test.labels.tolist())
    # Every test image keeps the label of its class name: compare each path's folder with its class.
    for path, label in zip(source.official_test.images.paths, source.official_test.labels):
        assert f"/{source.class_names[label]}/" in str(path)
    (root / "test" / "hexagon").mkdir()
    shutil.copy(next((root / "train" / source.class_names[1]).iterdir()), root / "test" / "hexagon" / "x.png")
    with pytest.raises(ValueError, match=r"test/ has class folder\(s\) 'hexagon' that train/ lacks"):
        pipelines.load_source(f"folder:{root}", image_size=(16, 16))


def test_split_folders_mixed_with_class_folders_are_refused_naming_both(split_folder, tmp_path):
    root = tmp_path / "mixed"
    shutil.copytree(split_folder, root)
    shutil.copytree(split_folder / "train" / sorted(p.name for p in (split_folder / "train").iterdir())[0],
                    root / "cats")
    with pytest.raises(ValueError, match=r"mixes split folders \('test', 'train'\) with other folders \('cats'\)"):
        pipelines.load_source(f"folder:{root}", image_size=(16, 16))


def test_class_names_align_a_folder_with_a_given_list(split_folder):
    names = ("zigzag",) + tuple(sorted(p.name for p in (split_folder / "train").iterdir()))
    source = pipelines.load_source(f"folder:{split_folder / 'train'}", image_size=(16, 16), class_names=names)
    assert source.class_names == names and source.num_classes == 5 and 0 not in set(source.labels.tolist())
    with pytest.raises(ValueError, match=r"class folder\(s\) 'circle'.* not in class_names"):
        pipelines.load_source(f"folder:{split_folder / 'train'}", image_size=(16, 16), class_names=("square",))


def test_run_mnist_reports_the_given_test_folder(split_folder, tmp_path):
    from augpipe.scripts.run_mnist import main
    import json

    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["--source", f"folder:{split_folder}", "--image-size", "16", "--model", "mlp",
                                       "--epochs", "1", "--batch-size", "16", "--run-dir", str(run_dir), "--quiet",
                                       "--no-tensorboard"])
    assert result.exit_code == 0, result.output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["splits"]["test"]["size"] == count_files(split_folder / "test")
    assert len(json.loads((run_dir / "config.json").read_text())["splits"]["train"]["class_counts"]) == 4


def test_make_splits_takes_a_separate_test_source_matched_by_class_name(split_folder, tmp_path):
    train = pipelines.load_source(f"folder:{split_folder / 'train'}", image_size=(16, 16))
    root = tmp_path / "test_only"
    shutil.copytree(split_folder / "test", root)
    shutil.rmtree(sorted(root.iterdir())[0])  # the test source lacks the first class: its indices shift
    test = pipelines.load_source(f"folder:{root}", image_size=(16, 16), channels=train.image_shape[-1])
    assert test.class_names != train.class_names
    splits = pipelines.make_splits(train, seed=0, test=test)
    assert len(splits.test) == count_files(root) and splits.test_is_official
    for path, label in zip(splits.test.images.paths, splits.test.labels):
        assert f"/{train.class_names[label]}/" in str(path)
    splits.check_disjoint()
    small = pipelines.load_source(f"folder:{root}", image_size=(8, 8), channels=train.image_shape[-1])
    with pytest.raises(ValueError, match=r"test source's images have shape \(8, 8, .\), the training images \(16, 16"):
        pipelines.make_splits(train, seed=0, test=small)


def test_run_mnist_test_source_reports_it_and_refuses_an_unknown_class(split_folder, tmp_path):
    import json

    from augpipe.scripts.run_mnist import main

    def run(test_folder, run_dir):
        return CliRunner().invoke(main, ["--source", f"folder:{split_folder / 'train'}", "--test-source",
                                         f"folder:{test_folder}", "--image-size", "16", "--model", "mlp",
                                         "--epochs", "1", "--batch-size", "16", "--run-dir", str(run_dir),
                                         "--quiet", "--no-tensorboard"])

    result = run(split_folder / "test", tmp_path / "run")
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["splits"]["test"]["size"] == count_files(split_folder / "test")
    unknown = tmp_path / "unknown"
    shutil.copytree(split_folder / "test", unknown)
    (unknown / "hexagon").mkdir()
    shutil.copy(next((split_folder / "test" / "circle").iterdir()), unknown / "hexagon" / "x.png")
    result = run(unknown, tmp_path / "run2")
    assert result.exit_code == 1 and "class(es) 'hexagon' that the training source lacks" in result.stderr
    assert not (tmp_path / "run2").exists()
    overlap = tmp_path / "overlap"
    shutil.copytree(split_folder / "test", overlap)
    shutil.copy(next((split_folder / "train" / "circle").iterdir()), overlap / "circle" / "copy.png")
    result = run(overlap, tmp_path / "run3")
    assert result.exit_code == 1 and "copy.png" in result.stderr, result.output


def test_run_mnist_drop_duplicates_keeps_one_copy_and_reports_the_count(split_folder, tmp_path):
    import json

    from augpipe.scripts.run_mnist import main

    root = tmp_path / "dupes"
    shutil.copytree(split_folder, root)
    for k, path in enumerate(sorted((root / "train" / "circle").iterdir())[:3]):
        shutil.copy(path, root / "test" / "circle" / f"dupe{k}.png")
    args = ["--source", f"folder:{root}", "--image-size", "16", "--model", "mlp", "--epochs", "1", "--batch-size",
            "16", "--quiet", "--no-tensorboard"]
    refused = CliRunner().invoke(main, args + ["--run-dir", str(tmp_path / "refused")])
    assert refused.exit_code == 1 and "Splits overlap: 3 image(s)" in refused.stderr
    assert all(f"dupe{k}.png" in refused.stderr for k in range(3))  # every pair named, not only the first
    result = CliRunner().invoke(main, args + ["--drop-duplicates", "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["duplicates_dropped"] == 3
    assert report["splits"]["test"]["size"] == count_files(root / "test") - 3
