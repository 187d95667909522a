"The shape of the code: no import cycle, one owner for the layout, Beam only wires, notebooks in the anchors' rhythm with their pictures."
import ast, json, re, statistics

import pytest

from conftest import ROOT

LIB = sorted(p for p in (ROOT/'depthseg').glob('*.py') if p.name != '_modidx.py')
NBS = sorted((ROOT/'nbs').glob('[0-9]*.ipynb'))


def imports(path) -> set[str]:
    "depthseg modules that `path` imports anywhere, inside functions too."
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            mod = node.module or ''
            if node.level == 1: out.add(mod.split('.')[0] or node.names[0].name)
            elif mod.startswith('depthseg.'): out.add(mod.split('.')[1])
            elif mod == 'depthseg': out |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('depthseg.')}
    return out - {path.stem}


def test_no_import_cycle():
    graph = {p.stem: imports(p) & {q.stem for q in LIB} for p in LIB}
    state = {}
    def visit(m, stack):
        if state.get(m) == 'done': return
        assert state.get(m) != 'open', f"import cycle: {' -> '.join(stack + [m])}"
        state[m] = 'open'
        for n in sorted(graph[m]): visit(n, stack + [m])
        state[m] = 'done'
    for m in graph: visit(m, [])
    assert graph['layout'] == set() and 'stats' not in graph['composites'] | graph['depth']


LAYOUT_NAMES = ['manifest.csv', 'bgfg', 'bgfg_mask', 'bgfg_depth', 'bgfg_depth16', 'fg_mask', 'bg_sources.csv', 'fg_sources.csv',
                'composites.json', 'depth.json', 'stage_stats.json', 'dataset.json', 'DATASET.md', 'index.json', 'schema.json',
                '.depthseg-pull', '_sources.csv', '_rejects.csv', 'card/']


def literals(path):
    "String constants of `path`, docstrings left out."
    tree = ast.parse(path.read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docs]


def test_layout_names_live_in_one_module():
    found = {}
    for p in LIB:
        for s in literals(p):
            for name in LAYOUT_NAMES:
                if re.search(rf"(^|[\s/`'(]){re.escape(name)}($|[\s/`'.,);:])", s): found.setdefault(name, set()).add(p.stem)
    assert {n: m for n, m in found.items() if m != {'layout'}} == {}
    assert set(found) >= {'manifest.csv', 'bgfg', 'composites.json'}  # the check sees them where they are


def test_beam_only_wires_the_pipeline():
    src = (ROOT/'depthseg/beam.py').read_text()
    for own in ('lru_cache', 'from PIL', 'check_record', 'write_table', 'json.', 'describe_sources', 'encode', 'compose('):
        assert own not in src, own
    for shared in ('make_pair', 'label_batch', 'plan_composites', 'plan_depth', 'finish_composites', 'save_stage_stats'):
        assert shared in src, shared


def cells(nb):
    return [c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']


def exported(nb):
    return [''.join(c['source']) for c in cells(nb) if re.match(r'#\|\s*export\b', ''.join(c['source']))]


def test_exported_cells_are_short():
    lengths = [len(s.splitlines()) for nb in NBS for s in exported(nb)]
    assert statistics.median(lengths) <= 15, statistics.median(lengths)


@pytest.mark.parametrize('nb', NBS, ids=[p.stem for p in NBS])
def test_every_public_name_has_an_example(nb):
    "Each public function and class a notebook exports is used in one of its (not exported) example cells."
    names = set()
    for s in exported(nb):
        for node in ast.parse('\n'.join(l for l in s.splitlines() if not l.lstrip().startswith(('#|', '!', '%')))).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith('_'): names.add(node.name)
    examples = '\n'.join(''.join(c['source']) for c in cells(nb) if not re.match(r'#\|\s*(export|eval: false)', ''.join(c['source'])))
    missing = sorted(n for n in names if not re.search(rf'\b{n}\b', examples))
    assert not missing, f'{nb.name}: no example uses {missing}'


STAGES = ['04_samples', '06_backgrounds', '07_foregrounds', '08_composites', '09_depth', '10_stats', '12_data', '13_beam']


@pytest.mark.parametrize('stem', STAGES)
def test_stage_notebooks_carry_their_pictures(stem):
    outputs = [o for c in cells(ROOT/f'nbs/{stem}.ipynb') for o in c.get('outputs', [])]
    assert any('image/png' in o.get('data', {}) for o in outputs), f'{stem}.ipynb: no picture committed; run it and save'
    assert not any(o.get('output_type') == 'error' for o in outputs)


def test_readme_table_is_the_layout():
    from depthseg.layout import folder_table
    assert folder_table() in (ROOT/'README.md').read_text()


def test_import_depthseg_reaches_every_module():
    import depthseg
    assert sorted(depthseg._MODULES) == sorted(p.stem for p in (ROOT/'depthseg').glob('*.py') if not p.stem.startswith('_'))
    assert callable(depthseg.data.load) and callable(depthseg.stats.write_card) and 'composites' in dir(depthseg)
