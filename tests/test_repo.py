"The repository is consistent: notebooks clean, library exported from them, README rendered from index.ipynb."
import filecmp, json, re, shutil, subprocess

from conftest import ROOT


def _copy_project(dst):
    for name in ('pyproject.toml', 'README.md'): shutil.copy(ROOT/name, dst/name)
    for name in ('nbs', 'depthseg'): shutil.copytree(ROOT/name, dst/name, ignore=shutil.ignore_patterns('__pycache__'))


def _different(a, b, pattern):
    return [p.relative_to(a).as_posix() for p in sorted(a.rglob(pattern))
            if not (b/p.relative_to(a)).exists() or not filecmp.cmp(p, b/p.relative_to(a), shallow=False)]


def test_notebooks_clean(tmp_path):
    _copy_project(tmp_path)
    subprocess.run(['nbdev-clean'], cwd=tmp_path, check=True)
    assert _different(ROOT/'nbs', tmp_path/'nbs', '*.ipynb') == [], 'run nbdev-clean and commit the notebooks'


def test_library_in_sync(tmp_path):
    _copy_project(tmp_path)
    for p in (tmp_path/'depthseg').glob('*.py'):
        if p.name != '__init__.py': p.unlink()
    subprocess.run(['nbdev-export'], cwd=tmp_path, check=True)
    assert _different(ROOT/'depthseg', tmp_path/'depthseg', '*.py') == [], 'run nbdev-export and commit depthseg/'
    assert _different(tmp_path/'depthseg', ROOT/'depthseg', '*.py') == []


def render_readme(nb=ROOT/'nbs/index.ipynb'):
    "README.md text from `nb`: markdown cells as they are, shown code cells fenced (Quarto-free stand-in for nbdev-readme)."
    parts = []
    for cell in json.loads(nb.read_text())['cells']:
        src = ''.join(cell['source'])
        if cell['cell_type'] == 'markdown': parts.append(src)
        elif not any(line.startswith(('#| hide', '#| eval: false', '#| echo: false')) for line in src.splitlines()):
            parts.append('```python\n' + '\n'.join(l for l in src.splitlines() if not l.startswith('#|')) + '\n```')
    return re.sub(r'\]\(([\w.-]+\.ipynb)\)', r'](nbs/\1)', '\n\n'.join(parts)) + '\n'


def test_readme_rendered_from_index():
    assert (ROOT/'README.md').read_text() == render_readme(), 'run: python tests/test_repo.py (rewrites README.md)'


if __name__ == '__main__': (ROOT/'README.md').write_text(render_readme())
