"""A remote error names the line that issued the op; in a notebook, as IPython names cells."""

from __future__ import annotations

import sys
import types

from zsyft.errors import RemoteError


def _error(callsite: str) -> RemoteError:
    return RemoteError("index 7 is out of bounds", worker="bob", op="index.Tensor",
                       callsite=callsite)


def test_a_line_of_a_notebook_cell_is_named_as_ipython_names_it(monkeypatch):
    """IPython compiles each cell under a temporary file name and keeps which execution
    count it belongs to (`shell.compile._filename_map`); its tracebacks say "Cell In[3]"."""
    shell = types.SimpleNamespace(
        compile=types.SimpleNamespace(_filename_map={"/tmp/ipykernel_9/1234.py": 3}))
    fake = types.ModuleType("IPython")
    fake.get_ipython = lambda: shell
    monkeypatch.setitem(sys.modules, "IPython", fake)
    assert "issued at Cell In[3], line 2" in str(_error("/tmp/ipykernel_9/1234.py:2"))
    assert "issued at /home/me/train.py:8" in str(_error("/home/me/train.py:8"))


def test_outside_ipython_the_file_and_line_are_named(monkeypatch):
    monkeypatch.delitem(sys.modules, "IPython", raising=False)
    assert "issued at /tmp/ipykernel_9/1234.py:2" in str(_error("/tmp/ipykernel_9/1234.py:2"))
