"Run every notebook in nbs/ as nbdev-test does, one pytest test each."
import pytest

import nbdev.test
from nbdev.config import get_config

from conftest import ROOT

NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb, monkeypatch):
    monkeypatch.chdir(nb.parent)
    flags = get_config(ROOT).tst_flags.split()
    ok, _ = nbdev.test.test_nb(nb, skip_flags=flags)
    assert ok, f'{nb.name} failed (its error is printed above)'
