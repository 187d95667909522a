"Run every notebook in nbs/ as nbdev-test does, one pytest test each; then build the docs site from them and check it."
import html, re, shutil

import pytest

import nbdev.test
from nbdev.config import get_config

from conftest import ROOT
from docsite import build_site, check_site, pictures

NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))
PASSED = set()  # notebooks run (outputs saved) in this session's copy


@pytest.fixture(scope='module')
def executed(tmp_path_factory):
    "A copy of nbs/ where each notebook, once its test passes, holds its outputs."
    return shutil.copytree(ROOT/'nbs', tmp_path_factory.mktemp('executed')/'nbs')


def run(nb, monkeypatch):
    monkeypatch.chdir(nb.parent)
    ok, _ = nbdev.test.test_nb(nb, skip_flags=get_config(ROOT).tst_flags.split(), save=True)
    if ok: PASSED.add(nb.name)
    return ok


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook(nb, executed, monkeypatch):
    assert run(executed/nb.name, monkeypatch), f'{nb.name} failed (its error is printed above)'


def test_docs_site(executed, tmp_path, monkeypatch):
    for nb in NOTEBOOKS:  # when run alone, run the notebooks first
        if nb.name not in PASSED: assert run(executed/nb.name, monkeypatch), nb.name
    site = tmp_path/'site'
    pages = build_site(executed, site)
    assert [p.stem for p in pages] == sorted(p.stem for p in NOTEBOOKS)
    assert check_site(site, executed) == []
    shown = pictures(site)
    for page in ('index', '06_backgrounds', '07_foregrounds', '08_composites', '09_depth', '10_stats', '13_beam', '04_samples'):
        assert shown[page] >= 1, f'{page}.html shows no picture'
    home = (site/'index.html').read_text()
    text = html.unescape(re.sub(r'<[^>]+>', '', home))
    assert 'pip install . && depthseg demo demo_dataset' in text and 'pip install -e ".[dev]" && pytest' in text
    assert 'href="08_composites.html"' in home
    (site/'08_composites.html').unlink()
    assert any('broken link 08_composites.html' in p for p in check_site(site, executed))  # the checks can fail
