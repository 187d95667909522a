"""The docs site without Quarto: executed notebooks -> nbdev processing -> HTML pages, and the checks a reader relies on.

    python tests/docsite.py [EXECUTED_NBS]   # runs every notebook (or takes them executed), builds _site/, checks it
"""
import importlib, json, re, shutil, subprocess, sys, tempfile
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _directives(src):
    return dict((m.group(1), m.group(2).strip()) for m in re.finditer(r'^#\|\s*([\w-]+):?\s*(.*)$', src, re.M))


COLAB = 'https://colab.research.google.com/github/depthseg/depthseg/blob/main/nbs/'


def _front_matter(nb) -> dict:
    "title and description from the YAML front matter cell nbdev's processing puts first."
    import yaml
    raw = next((c.source for c in nb.cells if c.cell_type == 'raw' and c.source.startswith('---')), '---\n---')
    fm = yaml.safe_load(raw.strip().strip('-')) or {}
    return dict(title=fm.get('title', 'depthseg'), description=fm.get('description', ''))


def _page_order(nbs):
    "index first, then the stages in file-name (pipeline) order."
    return sorted(nbs, key=lambda p: (p.stem != 'index', p.stem))


def build_site(executed: Path, out: Path) -> list[Path]:
    "HTML pages in `out` from the executed notebooks in `executed` (a copy of nbs/ with outputs)."
    import nbformat
    from nbconvert import HTMLExporter
    work = Path(tempfile.mkdtemp(prefix='depthseg-site-'))
    shutil.copy(ROOT/'pyproject.toml', work/'pyproject.toml')
    shutil.copytree(executed, work/'nbs')
    subprocess.run([sys.executable, '-c', 'from nbdev.quarto import nbdev_proc_nbs; nbdev_proc_nbs()'], cwd=work,
                   check=True, capture_output=True)
    pages = _page_order(list((work/'_proc').glob('*.ipynb')))
    front = {p.stem: _front_matter(nbformat.read(p, as_version=4)) for p in pages}
    nav = '<nav class="sidebar"><ul>' + ''.join(f'<li><a href="{p.stem}.html">{front[p.stem]["title"]}</a></li>' for p in pages) + '</ul></nav>'
    from nbconvert.preprocessors import TagRemovePreprocessor
    exporter = HTMLExporter(template_name='lab')
    exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}), enabled=True)
    out.mkdir(parents=True, exist_ok=True)
    for p in pages:
        nb = nbformat.read(p, as_version=4)
        fm, colab = front[p.stem], COLAB + f'{p.stem}.ipynb'
        head = nbformat.v4.new_markdown_cell(f"# {fm['title']}\n\n*{fm.get('description', '')}*\n\n"
                                             f'[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab})')
        nb.cells = [head] + [c for c in nb.cells if not (c.cell_type == 'raw' and c.source.startswith('---'))]
        for cell in nb.cells:
            cell.metadata.pop('execution', None)  # execnb's timings are floats, which nbformat's schema refuses
            if cell.cell_type != 'code': continue
            d = _directives(cell.source)
            cell.source = '\n'.join(l for l in cell.source.splitlines() if not l.startswith('#|'))
            if d.get('echo') == 'false' or 'hide' in d or re.fullmatch(r'show_doc\(.*\)', cell.source.strip()):
                cell.metadata.setdefault('tags', []).append('remove_input')
            for o in cell.get('outputs', []):
                if 'text/markdown' in o.get('data', {}):  # Quarto-only link attributes of show_doc
                    o['data']['text/markdown'] = re.sub(r'\)\{target="_blank"[^}]*\}', ')', o['data']['text/markdown'])
        html, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': fm['title']}})
        html = re.sub(r'href="([\w.-]+)\.ipynb"', r'href="\1.html"', html)
        html = re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav, html, count=1)
        (out/f'{p.stem}.html').write_text(html)
    shutil.rmtree(work)
    return sorted(out.glob('*.html'))


class _Links(HTMLParser):
    def __init__(self):
        super().__init__(); self.refs, self.images = [], 0
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == 'a' and a.get('href'): self.refs.append(a['href'])
        if tag == 'img' and a.get('src'):
            self.refs.append(a['src']); self.images += a['src'].startswith('data:image/')


def check_site(site: Path, executed: Path) -> list[str]:
    "Problems a reader would meet: missing pages, broken internal links, undocumented names, errors or warnings shown."
    problems = []
    nbs = sorted(p.stem for p in (ROOT/'nbs').glob('*.ipynb'))
    pages = {p.stem: p.read_text() for p in site.glob('*.html')}
    problems += [f'no page for {n}.ipynb' for n in nbs if n not in pages]
    for name, html in pages.items():
        parser = _Links(); parser.feed(html)
        for ref in parser.refs:
            if re.match(r'^(https?:|data:|mailto:|#)', ref): continue
            if not (site/ref.split('#')[0]).exists(): problems.append(f'{name}.html: broken link {ref}')
    for mod in sorted((ROOT/'depthseg').glob('*.py')):
        head = mod.read_text().split('\n', 3)[:3]
        src = next((re.search(r'\.\./nbs/([\w.-]+)\.ipynb', l) for l in head if '../nbs/' in l), None)
        if not src: continue
        m = importlib.import_module(f'depthseg.{mod.stem}')
        for name in getattr(m, '__all__', []):
            obj = getattr(m, name)
            if not callable(obj) or not getattr(obj, '__module__', '').startswith('depthseg'): continue
            doc = (obj.__doc__ or '').strip().splitlines()
            if not doc: problems.append(f'depthseg.{mod.stem}.{name} has no docstring'); continue
            page = pages.get(src.group(1), '')
            first = re.sub(r'`', '', doc[0])[:40]
            if name not in page or first not in re.sub(r'<[^>]+>|`', '', page).replace('&#x27;', "'").replace('&quot;', '"'):
                problems.append(f'{src.group(1)}.html does not show {name} with its docstring')
    for nb in executed.glob('*.ipynb'):
        for cell in json.loads(nb.read_text())['cells']:
            for o in cell.get('outputs', []):
                text = ''.join(o.get('text', ''))
                if o['output_type'] == 'error' or (o.get('name') == 'stderr' and re.search(r'Warning|Traceback|Error', text)):
                    problems.append(f'{nb.name} shows an error or warning: {text[:200] or o.get("ename")}')
    return problems


def pictures(site: Path) -> dict[str, int]:
    "Embedded pictures per page."
    out = {}
    for p in site.glob('*.html'):
        parser = _Links(); parser.feed(p.read_text()); out[p.stem] = parser.images
    return out


def execute_notebooks(dest: Path) -> Path:
    "Copies of nbs/ in `dest`, each run top to bottom as the tests run it, outputs saved."
    import nbdev.test
    shutil.copytree(ROOT/'nbs', dest)
    for nb in sorted(dest.glob('*.ipynb')):
        ok, _ = nbdev.test.test_nb(nb, skip_flags=['slow', 'gpu'], save=True)
        assert ok, f'{nb.name} failed'
    return dest


if __name__ == '__main__':
    executed = Path(sys.argv[1]) if len(sys.argv) > 1 else execute_notebooks(Path(tempfile.mkdtemp())/'nbs')
    pages = build_site(executed, ROOT/'_site')
    print(f'{len(pages)} pages in {ROOT/"_site"}; pictures: {pictures(ROOT/"_site")}')
    print('\n'.join(check_site(ROOT/'_site', executed)) or 'no problems')
