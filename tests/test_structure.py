"""The layout the renovation set: short modules, no import cycle, no stack-frame inspection, one place per rule.

These read the source: each guards a target that a change could quietly undo.
"""

import ast
import pathlib
import warnings

import pytest

from augpipe import augment, callbacks, pipelines
from augpipe.scripts import config, run_mnist

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "augment", "callbacks", "scripts")


def _modules():
    return [path for package in PACKAGES for path in sorted((ROOT / package).glob("*.py"))] + [ROOT / "validation.py"]


def test_no_module_is_longer_than_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > 600}
    assert not long, long


def test_no_stack_frame_inspection():
    for path in _modules():
        text = path.read_text()
        for needle in ("currentframe", "f_back", "f_locals", "_getframe", "import inspect"):
            assert needle not in text, (path.name, needle)


def _package_imports(path: pathlib.Path, package: str) -> set:
    """The modules of `package` that `path` imports, at its top level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == f"augpipe.{package}":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith(f"augpipe.{package}."):
                found.add(node.module.split(".")[2])
    return found - {"*"}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_import_cycle_inside_a_package(package):
    folder = ROOT / package
    graph = {p.stem: _package_imports(p, package) & {q.stem for q in folder.glob("*.py")}
             for p in folder.glob("*.py") if p.stem != "__init__"}
    for module in graph:
        graph[module].discard("__init__")
    state = {}

    def visit(module, trail):
        if state.get(module) == "done":
            return
        assert state.get(module) != "open", f"import cycle: {' -> '.join(trail + [module])}"
        state[module] = "open"
        for other in sorted(graph.get(module, ())):
            visit(other, trail + [module])
        state[module] = "done"

    for module in sorted(graph):
        visit(module, [])


def test_every_registered_source_option_is_a_config_field_and_a_run_mnist_option():
    fields = set(config.ExperimentConfig.__dataclass_fields__)
    params = {p.name: p for p in run_mnist.main.params}
    for option in pipelines.sources.source_options():
        if option.command:
            assert option.name in fields, option.name
            assert option.cli_flag in params[option.name].opts, option.name
            assert run_mnist.flag(option.name) == option.cli_flag
    # The --source help of the three commands is the registry's.
    from augpipe.scripts import preview_augment, profile_input, score_run

    for command in (run_mnist.main, profile_input.main, preview_augment.main, score_run.main):
        source = next(p for p in command.params if p.name == "source")
        assert source.help.startswith(pipelines.sources.source_help())


@pytest.mark.parametrize("face,name,new", [
    (augment, "check_unit", "augpipe.validation.check_unit"),
    (callbacks, "atomic_write_text", "augpipe.callbacks.base.atomic_write_text"),
    (callbacks, "committed_epoch", "augpipe.callbacks.commit.committed_epoch"),
    (callbacks, "roll_back_to_commit", "augpipe.callbacks.commit.roll_back_to_commit"),
])
def test_names_moved_off_the_public_faces_still_work_with_a_deprecation_message(face, name, new):
    assert name not in face.__all__
    with pytest.warns(DeprecationWarning, match=f"{name} is deprecated: use {new}"):
        assert callable(getattr(face, name))
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        face.no_such_name  # noqa: B018


def test_a_new_source_is_one_decorator_and_reaches_the_commands_options(tmp_path):
    import numpy as np

    option = pipelines.SourceOption("noise_count", "noise: how many images.", kind="count", query=int)

    @pipelines.register_source("noise", usage="noise:NAME", help="random gray images", options=(option,))
    def load_noise(argument, noise_count=4):
        images = np.random.default_rng(0).integers(0, 256, (noise_count, 6, 6), np.uint8)
        return pipelines.Source.from_arrays(images, np.arange(noise_count) % 2, name=argument)

    try:
        assert len(pipelines.load_source("noise:x?noise_count=6")) == 6
        assert len(pipelines.load_source("noise:x", noise_count=8)) == 8
        assert "noise:NAME (random gray images)" in pipelines.sources.source_help()
        with pytest.raises(ValueError, match=r"noise_count apply to noise:NAME sources.*'mnist-embedded'"):
            pipelines.load_source("mnist-embedded", noise_count=3)
        with pytest.raises(ValueError, match="already registered"):
            pipelines.register_source("noise", usage="noise:NAME", help="again")
    finally:
        pipelines.sources.unregister_source("noise")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="Unknown source spec 'noise:x'"):
            pipelines.load_source("noise:x")


def _design_example(marker: str) -> str:
    import re

    text = (ROOT / "docs" / "design.md").read_text()
    start = text.rindex("```python", 0, text.index(marker))
    return re.match(r"```python\n(.*?)```", text[start:], re.S).group(1).replace("\n    ", "\n")


def test_the_design_pages_callback_example_is_sorted_and_checked(tmp_path):
    import keras
    import numpy as np

    namespace = {}
    exec(compile(_design_example("# gradnorm.py"), "design.md", "exec"), namespace)
    norm, logger = namespace["WeightNorm"](), keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    assert callbacks.in_working_order([logger, norm]) == [norm, logger]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile("sgd", "mse")
    x, y = np.zeros((8, 4), np.float32), np.zeros((8, 2), np.float32)
    model.fit(x, y, epochs=1, verbose=0, callbacks=callbacks.in_working_order([logger, norm]))
    assert "weight_norm" in (tmp_path / "log.csv").read_text().splitlines()[0]
    curves = callbacks.TrainingCurves(tmp_path / "curves.png")
    with pytest.raises(ValueError, match="WeightNorm must come before TrainingCurves.*loggers record"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[curves, namespace["WeightNorm"]()])


def test_the_design_pages_source_example_registers_and_loads():
    namespace = {}
    exec(compile(_design_example("# mysources.py"), "design.md", "exec"), namespace)
    try:
        assert len(pipelines.load_source("noise:a?noise_count=6")) == 6
        with pytest.raises(ValueError, match="noise_count apply to noise:NAME sources"):
            pipelines.load_source("mnist", noise_count=6)
    finally:
        pipelines.sources.unregister_source("noise")


@pytest.mark.parametrize("module,name", [
    ("augpipe.scripts.experiment", "parse_strength"),
    ("augpipe.scripts.experiment", "ADAPTIVE_INITIAL_STRENGTH"),
    ("augpipe.scripts.experiment", "FOLDER_OPTIONS"),
    ("augpipe.pipelines.sources", "SPEC_KINDS"),
    ("augpipe.pipelines.sources", "load_idx"),
    ("augpipe.pipelines.sources", "DOWNLOAD_PROBE_HOSTS"),
])
def test_module_names_of_earlier_versions_still_work_with_a_deprecation_message(module, name):
    import importlib

    with pytest.warns(DeprecationWarning, match=f"{name} is deprecated"):
        value = getattr(importlib.import_module(module), name)
    assert value is not None
    if name == "parse_strength":
        assert value("constant:0.4")[:2] == ("schedule", 0.4)
    if name == "FOLDER_OPTIONS":
        assert "memory_budget_mb" in value and "extensions" not in value


def test_the_old_order_helpers_warn_and_still_answer():
    from augpipe.callbacks import base

    early, late = callbacks.StrengthSchedule(augment.Augment("none"), "constant:0"), callbacks.EpochCommit("b")
    with pytest.warns(DeprecationWarning, match="check_order is deprecated"):
        with pytest.raises(ValueError, match="EpochCommit must come after StrengthSchedule"):
            base.check_order(late, [late, early], after=(callbacks.StrengthSchedule,))
    with pytest.warns(DeprecationWarning, match="find_sibling_callbacks is deprecated"):
        assert base.find_sibling_callbacks(early) is None
