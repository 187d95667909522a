"Run every notebook in nbs/ as nbdev-test does, one pytest test each; then build the docs site from them and check it."
import html, re, shutil

import pytest

import nbdev.test
from nbdev.config import get_config

from conftest import ROOT
from docsite import build_site, check_site, output_problems, pictures

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
    data = (site/'12_data.html').read_text()
    (site/'12_data.html').write_text(data.replace('<h3 id="load">load<', '<h3 id="load">TFRecord shards<', 1).replace(
        '<main>', '<main><div class="jp-InputPrompt jp-InputArea-prompt">In&nbsp;[4]:</div>', 1))
    stats = (site/'10_stats.html').read_text()  # without its last picture
    (site/'10_stats.html').write_text(re.sub(r'(.*)<img[^>]*src="data:image/[^"]*"[^>]*>', r'\1', stats, count=1, flags=re.S))
    problems = check_site(site, executed)
    assert "12_data.html has no heading 'load' for depthseg.data.load" in problems
    assert any(p.startswith('12_data.html shows 1 prompts') for p in problems)
    assert any(p.startswith('10_stats.ipynb: cell') and 'pictures not on 10_stats.html' in p for p in problems)


def test_output_checks():
    "What the site check says of outputs: stderr, logging, progress bars, tracebacks and text cut mid-word fail; whole lines and a marker pass."
    def cell(src, *outs): return dict(cell_type='code', source=src, metadata={}, outputs=list(outs))
    def out(text, name='stdout'): return dict(output_type='stream', name=name, text=text)
    card = '# Dataset card\n\n- Number of images: 10\n'
    read = "text = (ds/'DATASET.md').read_text()\n"
    bad = [cell('stats = dataset_stats(ds)', out('\rstatistics: 100%|##########| 23/23 [00:00<00:00]\n', 'stderr')),
           cell('import apache_beam', out('WARNING:root:apitools not found\n', 'stderr')),
           cell('run()', out('WARNING:root:apitools not found\n')),
           cell('run()', out('statistics: 100%|##########| 23/23\n')),
           cell('run()', out('Traceback (most recent call last):\n  File "x.py", line 1\n')),
           cell("print((ds/'DATASET.md').read_text()[:30])", out(card[:30] + '\n')),
           cell(read + r"print('\n'.join(text.splitlines()[:2]))", out('# Dataset card\n\n'))]
    problems = output_problems('x.ipynb', dict(cells=bad))
    assert len(problems) == len(bad), problems
    assert 'progress bar' in problems[0] and 'logging' in problems[1] and 'logging' in problems[2] and 'traceback' in problems[4]
    assert "cut at character 30, mid-line: ends '- Number of im'" in problems[5] and 'first 2 lines' in problems[6]
    good = [cell(read + r"print('\n'.join(text.splitlines()[:2]) + '\n... 1 more line')", out('# Dataset card\n\n... 1 more line\n')),
            cell("print((ds/'DATASET.md').read_text())", out(card)), cell('print(a[:3])', out('[1, 2, 3]\n'))]
    assert output_problems('x.ipynb', dict(cells=good)) == []
