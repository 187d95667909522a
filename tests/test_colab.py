"The notebooks as Colab runs them: every cell compiles after IPython's own transformations, and each installs what it imports from the one repository URL."
import ast, json, re, sys, tomllib

import pytest
from IPython.core.inputtransformer2 import TransformerManager

from conftest import ROOT

NBS = sorted((ROOT/'nbs').glob('*.ipynb'))
PROJECT = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']
URL = PROJECT['urls']['Repository']
CORE = {'depthseg', 'numpy', 'PIL', 'matplotlib', 'tqdm', 'fastcore', 'tensorflow', 'keras', 'h5py', 'gdown', 'IPython'}
EXTRAS = {'notebooks': {'nbdev', 'keras_hub'}, 'hub': {'keras_hub'}, 'beam': {'apache_beam'}}


def code_cells(nb):
    return [''.join(c['source']) for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']


@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_every_cell_compiles_in_ipython(nb):
    for i, src in enumerate(code_cells(nb)):
        code = TransformerManager().transform_cell(src)  # what IPython runs: `!cmd` becomes get_ipython().system(...)
        compile(code, f'{nb.name} cell {i}', 'exec')


def install_cell(nb) -> str:
    cells = [s for s in code_cells(nb) if "'google.colab' in sys.modules" in s and '!pip install' in s]
    assert len(cells) == 1, f'{nb.name}: one Colab install cell expected'
    return cells[0]


@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_install_cell_and_badge_follow_the_repository(nb):
    cell = install_cell(nb)
    assert '#| eval: false' in cell and f'@ git+{URL}"' in cell, cell
    owner_repo = URL.removeprefix('https://github.com/')
    badge = f'https://colab.research.google.com/github/{owner_repo}/blob/main/nbs/{nb.name}'
    assert badge in (ROOT/'nbs'/nb.name).read_text(), f'{nb.name}: no Colab badge to {badge}'


@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_install_cell_installs_what_the_notebook_imports(nb):
    extras = set(re.search(r'depthseg\[([\w,]+)\]', install_cell(nb)).group(1).split(','))
    assert extras <= set(PROJECT['optional-dependencies']), extras
    have = CORE | set(sys.stdlib_module_names) | set().union(*(EXTRAS.get(e, set()) for e in extras))
    imported = set()
    for src in code_cells(nb):
        tree = ast.parse(TransformerManager().transform_cell(src))
        for node in tree.body:  # what a cell imports when it runs (imports inside functions run only when called)
            if isinstance(node, ast.Import): imported |= {a.name.split('.')[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0: imported.add(node.module.split('.')[0])
    assert imported <= have, f'{nb.name} imports {sorted(imported - have)}, which its install cell does not install'


def test_cells_the_tests_skip_call_the_library_as_it_is():
    "The `#| eval: false` cells (full-size runs, Colab, Dataflow) are never run here: their calls must at least fit the signatures."
    import inspect
    import depthseg.beam, depthseg.cli, depthseg.composites, depthseg.data, depthseg.depth, depthseg.pack, depthseg.stats
    fns = {n: getattr(m, n) for m in (depthseg.beam, depthseg.cli, depthseg.composites, depthseg.data, depthseg.depth,
                                       depthseg.pack, depthseg.stats) for n in getattr(m, '__all__', []) if callable(getattr(m, n))}
    checked = 0
    for nb in NBS:
        for src in code_cells(nb):
            if '#| eval: false' not in src: continue
            for node in ast.walk(ast.parse(TransformerManager().transform_cell(src))):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in fns:
                    args = [None] * len(node.args)
                    inspect.signature(fns[node.func.id]).bind(*args, **{k.arg: None for k in node.keywords if k.arg})
                    checked += 1
    assert checked >= 5, checked  # the full-size cells of the depth, pack and Dataflow pages
