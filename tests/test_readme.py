"""The README's library example runs as written."""

import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text()
    marker = text.index("<!-- readme-example")
    return re.search(r"```python\n(.*?)```", text[marker:], re.S).group(1)


def test_readme_first_screen_has_the_two_commands():
    text = README.read_text()
    commands = re.findall(r"```bash\n(.*?)\n```", text, re.S)[:2]
    assert "pip install . && run-mnist" in commands[0]
    assert 'pip install ".[test]" && python -m pytest' in commands[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert 'pip install ".[test]"' in ci and "python -m pytest" in ci


def test_readme_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(readme_example(), "README.md", "exec"), namespace)
    lines = (tmp_path / "log.csv").read_text().splitlines()
    header = lines[0].split(",")
    for key in ("test_loss", "test_accuracy", "aug_strength", "learning_rate", "val_accuracy"):
        assert key in header
    assert len(lines) == 4  # header + 3 epochs
