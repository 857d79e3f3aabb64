"""`preview-augment`: the grid's rows are strengths, its columns the same images, and bad input is one line."""

import os

import matplotlib
import numpy as np
from click.testing import CliRunner
from PIL import Image

from augpipe.scripts.preview_augment import augment_grid, main


def test_rows_are_strengths_and_columns_keep_their_image(embedded_splits):
    images = embedded_splits.train.images[:5]
    grid = augment_grid(images, "mnist", [0.0, 0.5, 1.0], seed=2)
    assert grid.shape == (3, 5, 28, 28, 1) and grid.dtype == np.uint8
    np.testing.assert_array_equal(grid[0], images)  # strength 0 is the input
    assert not np.array_equal(grid[2], images)
    # The same draws in every row: the same call gives the same grid.
    np.testing.assert_array_equal(augment_grid(images, "mnist", [0.0, 0.5, 1.0], seed=2), grid)


def test_writes_a_png_from_a_source_and_from_photos(tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["--policy", "mnist", "--samples", "3", "--strengths", "0,1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 strengths x 3 images" in result.output
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size[0] > image.size[1]  # 3 columns, 2 rows
    photo = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    colour = tmp_path / "colour.png"
    result = CliRunner().invoke(main, ["--policy", "trivialaugment", "--image", photo, "--samples", "2",
                                       "--image-size", "40", "32", "--out", str(colour)])
    assert result.exit_code == 0, result.output
    assert colour.stat().st_size > 1000


def test_bad_input_is_one_line(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["--policy", "trivalaugment", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "Did you mean 'trivialaugment'" in result.output
    result = runner.invoke(main, ["--strengths", "0,2", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "strength=2.0. Expected a float in [0, 1]" in result.output
    # run-mnist's grammar: a schedule is refused (one row is one strength), constant:X and off are taken.
    result = runner.invoke(main, ["--strength", "linear:0:1:5", "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 2 and "'linear:0:1:5' changes over epochs" in result.output
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    result = runner.invoke(main, ["--image", str(not_an_image), "--out", str(tmp_path / "x.png")])
    assert result.exit_code == 1 and "Cannot read" in result.output and "notes.txt" in result.output
    assert not (tmp_path / "x.png").exists()


def test_previews_a_folder_source_at_the_image_size(shapes_folder, tmp_path):
    from augpipe.scripts.preview_augment import load_preview_images

    images, captions = load_preview_images(shapes_folder, [], samples=4, seed=0, image_size=(24, 16))
    assert images.shape == (4, 24, 16, 3) and images.dtype == np.uint8
    assert len(set(captions)) == 4  # one image of each of the four shape classes
    out = tmp_path / "folder.png"
    result = CliRunner().invoke(main, ["--source", shapes_folder, "--image-size", "24", "--samples", "2",
                                       "--strengths", "0,1", "--policy", "trivialaugment", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.stat().st_size > 1000


def test_strengths_take_run_mnists_grammar(tmp_path):
    out = tmp_path / "grid.png"
    result = CliRunner().invoke(main, ["--samples", "2", "--strength", "off,constant:0.5,1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "3 strengths x 2 images" in result.output and out.is_file()


def test_an_out_path_below_a_file_is_one_line(tmp_path):
    # Found on main: a FileExistsError traceback after the grid was drawn.
    (tmp_path / "notes.txt").write_text("x")
    result = CliRunner().invoke(main, ["--samples", "2", "--out", str(tmp_path / "notes.txt" / "grid.png")])
    assert result.exit_code == 2 and "which is a file" in result.output and "Traceback" not in result.output
