"""Every docstring example runs, imported by its installed `augpipe.*` name.

Collecting doctests by file path would import `pipelines/sources.py` a second
time as a bare `pipelines.sources`; importing by name keeps one module object
per file, the one users get.
"""

import doctest
import importlib
import pkgutil

import pytest

import augpipe
import augpipe.scripts

LIBRARIES = (augpipe.pipelines, augpipe.augment, augpipe.callbacks)
LIBRARY_MODULES = sorted(
    [f"{package.__name__}.{info.name}" for package in LIBRARIES for info in pkgutil.iter_modules(package.__path__)]
    + ["augpipe.validation"]
)
MODULES = LIBRARY_MODULES + sorted(
    f"augpipe.scripts.{info.name}" for info in pkgutil.iter_modules(augpipe.scripts.__path__)
)


def _run(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):
        runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name):
    result = _run(name)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed (output above)"


def test_docstring_examples_exist_in_every_library_module():
    # A module whose examples silently stopped being found would pass the test above.
    without = [name for name in LIBRARY_MODULES if _run(name).attempted == 0]
    assert without == [], f"modules without a runnable docstring example: {without}"
