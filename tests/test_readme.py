"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert blocks, "README has no python examples"
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    outputs, both, top = namespace["outputs"], namespace["both"], namespace["top"]
    assert outputs.shape == (4, 10, 32) and both.shape == (4, 10, 64) and top.shape == (4, 10, 64)
    cell = namespace["mgu"]()
    params = cell.init(namespace["jax"].random.key(0), 3, 5)
    _, ys = namespace["rnnlab"].unroll(cell, params, namespace["jnp"].ones((2, 6, 3)))
    assert ys.shape == (2, 6, 5)
