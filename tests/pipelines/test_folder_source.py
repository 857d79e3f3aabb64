"""Folder sources: class-per-subfolder image files, decoded inside the pipeline."""

import io
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from augpipe import pipelines
from augpipe.pipelines import files as files_module
from augpipe.pipelines import load_source, make_splits, build_pipeline, build_training_pipeline
from augpipe.pipelines.files import ImageFiles
from augpipe.pipelines.synthetic import write_shapes_folder


def save(path, array, fmt=None, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(array, np.uint8)
    image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array, mode)
    image.save(path, fmt)
    return path


def solid(height, width, value):
    return np.broadcast_to(np.asarray(value, np.uint8), (height, width, len(np.atleast_1d(value)))).copy()


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return write_shapes_folder(tmp_path_factory.mktemp("shapes"), per_class=12, seed=1)


def test_classes_are_sorted_subfolders_and_other_files_are_ignored(tmp_path):
    for name in ("zebra", "ant", "moth"):
        save(tmp_path / name / "a.png", solid(5, 7, 10))
        save(tmp_path / name / "deeper" / "b.jpg", solid(9, 4, (200, 10, 10)))
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    save(tmp_path / "ant" / ".hidden.png", solid(5, 5, 0))
    save(tmp_path / ".cache" / "c.png", solid(5, 5, 0))
    save(tmp_path / "loose.png", solid(5, 5, 0))
    source = load_source(f"folder:{tmp_path}", image_size=(8, 6))
    assert source.class_names == ("ant", "moth", "zebra")
    assert source.num_classes == 3 and len(source) == 6
    assert source.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert [os.path.relpath(p, tmp_path) for p in source.images.paths[:2]] == ["ant/a.png", "ant/deeper/b.jpg"]
    assert source.image_shape == (8, 6, 3)
    assert "2 other file(s) ignored" in source.provenance  # notes.txt and loose.png
    assert np.asarray(source.images).shape == (6, 8, 6, 3)


def test_extensions_narrow_what_is_taken(tmp_path):
    save(tmp_path / "a" / "1.png", solid(5, 5, 1))
    save(tmp_path / "a" / "2.JPG", solid(5, 5, 1))
    save(tmp_path / "b" / "3.png", solid(5, 5, 1))
    assert len(load_source(f"folder:{tmp_path}", image_size=(4, 4), extensions="png")) == 2
    assert len(load_source(f"folder:{tmp_path}", image_size=(4, 4), extensions=[".jpg", "png"])) == 3
    with pytest.raises(ValueError, match=r"extensions='tiff'.*Expected some of"):
        load_source(f"folder:{tmp_path}", image_size=(4, 4), extensions="tiff")


def test_mixed_channels_and_formats_come_out_with_the_asked_channels(tmp_path):
    gray = np.full((6, 8, 1), 90, np.uint8)
    colour = solid(6, 8, (200, 40, 10))
    save(tmp_path / "a" / "gray.png", gray)
    save(tmp_path / "a" / "gray_alpha.png", np.dstack([gray, np.full_like(gray, 128)]), mode="LA")
    save(tmp_path / "a" / "rgba.png", np.dstack([colour, np.full((6, 8, 1), 7, np.uint8)]), mode="RGBA")
    save(tmp_path / "b" / "rgb.bmp", colour)
    save(tmp_path / "b" / "palette.gif", colour)
    save(tmp_path / "b" / "gray.jpg", gray, fmt="JPEG")
    source = load_source(f"folder:{tmp_path}", image_size=(6, 8))
    assert source.image_shape == (6, 8, 3)  # detected: some files have colour
    rgb = dict(zip((os.path.basename(p) for p in source.images.paths), np.asarray(source.images)))
    assert (rgb["gray.png"] == 90).all() and (rgb["gray_alpha.png"] == 90).all()  # gray repeated, alpha dropped
    np.testing.assert_array_equal(rgb["rgba.png"], colour)
    np.testing.assert_array_equal(rgb["rgb.bmp"], colour)
    assert np.abs(rgb["palette.gif"].astype(int) - colour).max() <= 8  # GIF palette quantization
    assert np.abs(rgb["gray.jpg"].astype(int) - 90).max() <= 2
    luma = load_source(f"folder:{tmp_path}", image_size=(6, 8), channels=1)
    assert luma.image_shape == (6, 8, 1)
    by_name = dict(zip((os.path.basename(p) for p in luma.images.paths), np.asarray(luma.images)))
    expected = round(0.2989 * 200 + 0.587 * 40 + 0.114 * 10)  # ITU-R 601 luma, as tf.image.rgb_to_grayscale
    assert abs(int(by_name["rgb.bmp"][0, 0, 0]) - expected) <= 1 and (by_name["gray.png"] == 90).all()
    only_gray = tmp_path / "only_gray"
    save(only_gray / "a" / "1.png", gray)
    save(only_gray / "b" / "2.jpg", gray, fmt="JPEG")
    assert load_source(f"folder:{only_gray}", image_size=(4, 4)).image_shape == (4, 4, 1)


def test_resize_modes_keep_or_ignore_the_aspect_ratio(tmp_path):
    # 20 x 40: black outer quarters left and right, white middle half.
    wide = np.zeros((20, 40, 3), np.uint8)
    wide[:, 10:30] = 255
    save(tmp_path / "a" / "wide.png", wide)
    save(tmp_path / "b" / "wide.png", wide)

    def first(resize):
        return np.asarray(load_source(f"folder:{tmp_path}", image_size=(10, 10), resize=resize).images)[0]

    stretched, cropped, padded = first("stretch"), first("crop"), first("pad")
    assert (cropped == 255).all()  # the central square is the white middle
    assert (stretched[:, 0] == 0).all() and (stretched[:, 5] == 255).all()
    assert (padded[:2] == 0).all() and (padded[-2:] == 0).all()  # 10x20 -> 5x10, padded top and bottom
    assert (padded[4:6, 4:6] == 255).all()


def test_a_corrupt_file_is_an_error_naming_it_unless_skipped(tmp_path):
    for n in range(3):
        save(tmp_path / "a" / f"{n}.png", solid(5, 5, n))
        save(tmp_path / "b" / f"{n}.jpg", solid(5, 5, (n, 2, 3)), fmt="JPEG")
    good = (tmp_path / "b" / "0.jpg").read_bytes()
    (tmp_path / "b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (tmp_path / "a" / "text.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError) as error:
        load_source(f"folder:{tmp_path}", image_size=(4, 4))
    message = str(error.value)
    assert "2 of 8 image file(s) could not be decoded" in message
    assert "truncated.jpg" in message and "text.png" in message and "Invalid JPEG data" in message
    assert "on_error='skip'" in message and "--skip-bad-images" in message
    source = load_source(f"folder:{tmp_path}", image_size=(4, 4), on_error="skip")
    assert len(source) == 6
    assert sorted(os.path.basename(path) for path, _ in source.skipped) == ["text.png", "truncated.jpg"]
    assert "2 undecodable file(s) skipped" in source.provenance
    with pytest.raises(ValueError, match="on_error='ignore'. Expected one of: raise, skip"):
        load_source(f"folder:{tmp_path}", image_size=(4, 4), on_error="ignore")


def test_duplicate_files_under_two_names_are_caught_by_check_disjoint(tmp_path):
    blob = io.BytesIO()
    Image.fromarray(solid(6, 6, (1, 2, 3))).save(blob, "PNG")
    for n in range(10):
        (tmp_path / "same").mkdir(exist_ok=True)
        (tmp_path / "same" / f"copy{n}.png").write_bytes(blob.getvalue())
        save(tmp_path / "different" / f"{n}.png", solid(6, 6, (n, 9, 9)))
    splits = make_splits(load_source(f"folder:{tmp_path}", image_size=(6, 6)), seed=0)
    with pytest.raises(ValueError, match=r"Splits overlap: .*copy\d\.png'\) = .*copy\d\.png"):
        splits.check_disjoint()


def test_file_contents_not_decoded_pixels_are_fingerprinted(tmp_path, shapes):
    # A file re-encoded with other bytes but equal pixels is a different file.
    source = load_source(f"folder:{shapes}", image_size=(16, 16))
    splits = make_splits(source, seed=0)
    splits.check_disjoint()
    again = make_splits(load_source(f"folder:{shapes}", image_size=(16, 16)), seed=0)
    assert again.summary() == splits.summary()
    copy = tmp_path / "copy"
    shutil.copytree(shapes, copy)
    path = sorted((copy / "circle").iterdir())[0]
    with open(path, "ab") as handle:
        handle.write(b"\0")  # same pixels, other bytes
    changed = make_splits(load_source(f"folder:{copy}", image_size=(16, 16)), seed=0)
    assert [s.fingerprint for s in changed] != [s.fingerprint for s in splits]


def test_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="Image folder not found"):
        load_source(f"folder:{tmp_path / 'missing'}", image_size=(8, 8))
    with pytest.raises(ValueError, match=r"holds nothing\. Expected one subfolder per class"):
        load_source(f"folder:{tmp_path}", image_size=(8, 8))
    save(tmp_path / "loose.png", solid(4, 4, 1))
    with pytest.raises(ValueError, match=r"holds 1 file\(s\) and no subfolders"):
        load_source(f"folder:{tmp_path}", image_size=(8, 8))
    save(tmp_path / "a" / "1.png", solid(4, 4, 1))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=r"Class folder\(s\) 'b' .* hold no image files"):
        load_source(f"folder:{tmp_path}", image_size=(8, 8))


def test_a_single_class_folder_loads_with_one_class(tmp_path):
    for n in range(4):
        save(tmp_path / "only" / f"{n}.png", solid(4, 4, n))
    source = load_source(f"folder:{tmp_path}", image_size=(4, 4))
    assert source.num_classes == 1 and source.class_names == ("only",)
    assert set(source.labels.tolist()) == {0}


def test_options_are_checked_before_any_decoding(tmp_path, shapes):
    with pytest.raises(ValueError, match=r"needs an image size.*--image-size H W"):
        load_source(f"folder:{shapes}")
    with pytest.raises(ValueError, match=r"image_size=\(0, 8\)"):
        load_source(f"folder:{shapes}", image_size=(0, 8))
    with pytest.raises(ValueError, match=r"resize='squash'. Expected one of: stretch, crop, pad"):
        load_source(f"folder:{shapes}", image_size=(8, 8), resize="squash")
    with pytest.raises(ValueError, match=r"channels=4"):
        load_source(f"folder:{shapes}", image_size=(8, 8), channels=4)
    with pytest.raises(ValueError, match=r"cache='disk'"):
        load_source(f"folder:{shapes}", image_size=(8, 8), cache="disk")
    with pytest.raises(ValueError, match=r"image_size apply to folder:DIR sources.*'mnist-embedded'"):
        load_source("mnist-embedded", image_size=(8, 8))


def test_cache_mode_follows_the_memory_budget(tmp_path, shapes):
    decoded = 48 * 16 * 16 * 3
    assert load_source(f"folder:{shapes}", image_size=(16, 16)).images.cache == "stream"  # no budget by default
    assert load_source(f"folder:{shapes}", image_size=(16, 16), memory_budget=decoded).images.cache == "memory"
    small = load_source(f"folder:{shapes}", image_size=(16, 16), memory_budget=decoded - 1)
    assert small.images.cache == "stream"
    filed = load_source(f"folder:{shapes}", image_size=(16, 16), memory_budget=0, cache_dir=tmp_path)
    assert filed.images.cache == "file"


def batches(dataset):
    return [(x.numpy(), y.numpy()) for x, y in dataset]


def test_every_cache_mode_gives_the_same_batches_in_the_same_order(tmp_path, shapes):
    results = {}
    for cache in ("memory", "stream", "file"):
        source = load_source(f"folder:{shapes}", image_size=(20, 24), cache=cache, cache_dir=tmp_path / "c")
        splits = make_splits(source, seed=3)
        train, epoch = build_training_pipeline(splits.train, batch_size=8, seed=5)
        first, second = batches(train), batches(train)
        val = batches(build_pipeline(splits.val, batch_size=8, training=False))
        results[cache] = (first, second, val)
    for cache in ("stream", "file"):
        for got, want in zip(results[cache], results["memory"]):
            assert len(got) == len(want)
            for (x, y), (wx, wy) in zip(got, want):
                np.testing.assert_array_equal(x, wx)
                np.testing.assert_array_equal(y, wy)
    first, second, _ = results["memory"]
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(first, second))  # epochs differ in order
    assert first[0][0].shape == (8, 20, 24, 3)


def test_a_streamed_epoch_is_a_function_of_seed_and_epoch(shapes):
    source = load_source(f"folder:{shapes}", image_size=(12, 12), cache="stream")
    split = make_splits(source, seed=0).train
    straight, _ = build_training_pipeline(split, batch_size=16, seed=2)
    batches(straight)
    epoch_one = batches(straight)
    resumed, _ = build_training_pipeline(split, batch_size=16, seed=2, initial_epoch=1)
    for (x, y), (rx, ry) in zip(epoch_one, batches(resumed)):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)


def test_streaming_never_decodes_the_whole_split(shapes, monkeypatch):
    source = load_source(f"folder:{shapes}", image_size=(12, 12), cache="stream")
    split = make_splits(source, seed=0).train

    def refuse(*args, **kwargs):
        raise AssertionError("a streamed split must not be decoded into memory")

    monkeypatch.setattr(ImageFiles, "decode", refuse)
    train, _ = build_training_pipeline(split, batch_size=16, seed=0)
    assert sum(len(y) for _, y in batches(train)) == len(split)
    val = build_pipeline(split, batch_size=16, training=False)
    assert sum(len(y) for _, y in batches(val)) == len(split)


def test_the_file_cache_is_written_once_and_keyed_by_contents_and_options(tmp_path, shapes):
    cache_dir = tmp_path / "cache"
    source = load_source(f"folder:{shapes}", image_size=(10, 10), cache="file", cache_dir=cache_dir)
    path = source.images.cache_file()
    stamp = path.stat().st_mtime_ns
    np.testing.assert_array_equal(np.load(path), np.asarray(dataclass_replace(source.images, cache="memory")))
    assert source.images.cache_file() == path and path.stat().st_mtime_ns == stamp
    other = load_source(f"folder:{shapes}", image_size=(10, 10), resize="pad", cache="file", cache_dir=cache_dir)
    assert other.images.cache_file() != path
    assert not list(cache_dir.glob(".*partial"))


def dataclass_replace(files, **changes):
    import dataclasses

    return dataclasses.replace(files, **changes)


def test_image_files_index_like_an_array(shapes):
    files = load_source(f"folder:{shapes}", image_size=(9, 7)).images
    assert files.shape == (48, 9, 7, 3) and files.dtype == np.uint8 and files.nbytes == 48 * 9 * 7 * 3
    subset = files[np.array([3, 1])]
    assert isinstance(subset, ImageFiles) and len(subset) == 2
    whole = np.asarray(files)
    np.testing.assert_array_equal(np.asarray(subset), whole[[3, 1]])
    np.testing.assert_array_equal(files[5], whole[5])
    np.testing.assert_array_equal(np.asarray(files[:4]), whole[:4])


def test_from_files_takes_paths_and_labels(shapes):
    paths = sorted(str(p) for p in shapes.rglob("*.png"))[:6]
    source = pipelines.Source.from_files(paths, [0, 1, 2, 0, 1, 2], image_size=(8, 8), class_names=["x", "y", "z"])
    assert source.num_classes == 3 and len(source) == 6 and source.images.paths.tolist() == paths
    with pytest.raises(ValueError, match="Count mismatch: 6 images but 2 labels"):
        pipelines.Source.from_files(paths, [0, 1], image_size=(8, 8))
    with pytest.raises(ValueError, match="No image files given"):
        pipelines.Source.from_files([], [], image_size=(8, 8))


def test_decode_errors_after_loading_name_the_cause(tmp_path):
    for n in range(2):
        save(tmp_path / "a" / f"{n}.png", solid(4, 4, n))
        save(tmp_path / "b" / f"{n}.png", solid(4, 4, n + 5))
    source = load_source(f"folder:{tmp_path}", image_size=(4, 4))
    (tmp_path / "a" / "0.png").write_bytes(b"broken since")
    with pytest.raises(ValueError, match=r"Could not decode an image file.*load the source again"):
        np.asarray(source.images)


def test_tf_error_text_drops_the_node_names():
    class Error(Exception):
        message = "{{function_node __wrapped__DecodeImage}} Unknown image file format. [Op:DecodeImage]"

    assert files_module._tf_error_text(Error()) == "Unknown image file format."


def test_host_augmentation_on_a_streamed_folder_resumes_exactly(shapes):
    from augpipe import augment

    source = load_source(f"folder:{shapes}", image_size=(16, 16), cache="stream")
    split = make_splits(source, seed=0).train

    def epoch_batches(initial_epoch, epochs):
        layer = augment.Augment("mnist", strength=0.8, seed=7, placement="host")
        train, _ = build_training_pipeline(split, batch_size=16, seed=1, host_augment=layer,
                                           initial_epoch=initial_epoch, host_parallel_calls=2)
        return [batches(train) for _ in range(epochs)]

    straight = epoch_batches(0, 2)
    resumed = epoch_batches(1, 1)
    for (x, y), (rx, ry) in zip(straight[1], resumed[0]):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)
    plain = batches(build_training_pipeline(split, batch_size=16, seed=1)[0])
    assert not np.array_equal(straight[0][0][0], plain[0][0])  # it did augment
