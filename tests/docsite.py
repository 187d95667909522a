"""The docs site without Quarto: executed notebooks -> nbdev processing -> HTML pages, and the checks a reader relies on.

    python tests/docsite.py [EXECUTED_NBS]   # runs every notebook (or takes them executed), builds _site/, checks it

Quarto builds the real site (.github/workflows/deploy.yaml: `nbdev-docs`, nbs/_quarto.yml). Quarto cannot be installed
where the tests run, so this builds the same pages from the same processed notebooks (nbdev's `nbdev_proc_nbs`) with
nbconvert: the sidebar of nbs/sidebar.yml, the title and description of each notebook's front matter, no prompts, and
Quarto's cell options (`echo`, `output`, `include`). `check_site` then lists what a reader would trip over, one line each.
"""
import ast, html, importlib, json, os, re, shutil, subprocess, sys, tempfile, time
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _directives(src):
    return dict((m.group(1), m.group(2).strip()) for m in re.finditer(r'^#\|\s*([\w-]+):?\s*(.*)$', src, re.M))


def colab_url(stem: str) -> str:
    "Colab's link to notebook `stem`: the one setting is pyproject.toml's [project.urls] Repository (nbdev's `git_url`)."
    from nbdev.config import get_config
    cfg = get_config(ROOT)
    assert cfg.git_url.startswith('https://github.com/'), f'[project.urls] Repository is not on GitHub: {cfg.git_url!r}'
    nbs = cfg.nbs_path.relative_to(cfg.config_path).as_posix()
    return f'https://colab.research.google.com/github/{cfg.user}/{cfg.repo}/blob/{cfg.branch}/{nbs}/{stem}.ipynb'


COLAB_BADGE = 'https://colab.research.google.com/assets/colab-badge.svg'


def _front_matter(nb) -> dict:
    "title and description from the YAML front matter cell nbdev's processing puts first."
    import yaml
    raw = next((c.source for c in nb.cells if c.cell_type == 'raw' and c.source.startswith('---')), '---\n---')
    fm = yaml.safe_load(raw.strip().strip('-')) or {}
    return dict(title=fm.get('title', 'depthseg'), description=fm.get('description', ''))


def _sidebar(proc: Path) -> list[tuple[str | None, str]]:
    "(section, page) in the order of the sidebar.yml nbdev wrote for Quarto: index first, then the stages in pipeline order."
    import yaml
    def walk(items, section=None):
        for it in items or []:
            if isinstance(it, str): yield section, Path(it).stem
            elif isinstance(it, dict) and 'contents' in it: yield from walk(it['contents'], it.get('section', section))
            elif isinstance(it, dict) and 'href' in it: yield section, Path(it['href']).stem
    sb = proc/'sidebar.yml'
    order = list(walk(yaml.safe_load(sb.read_text())['website']['sidebar']['contents'])) if sb.exists() else []
    pages = {p.stem for p in proc.glob('*.ipynb')}
    order = [(s, p) for s, p in order if p in pages]
    return order + [(None, p) for p in sorted(pages - {p for _, p in order}, key=lambda p: (p != 'index', p))]


SITE_CSS = """/* The look of nbdev's Quarto site (theme cosmo, floating sidebar, toc) for the pages tests/docsite.py builds. */
:root { --ds-primary: #2780e3; --ds-text: #343a40; --ds-muted: #6c757d; --ds-border: #dee2e6;
        --ds-navbar: 3.5rem; --ds-sidebar: 17rem; --ds-toc: 15rem; }
body.jp-Notebook { margin: 0; padding: 0; color: var(--ds-text); background: #fff;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
.ds-navbar { position: fixed; top: 0; left: 0; right: 0; height: var(--ds-navbar); z-index: 20; display: flex;
  align-items: center; gap: 1rem; padding: 0 1.5rem; background: var(--ds-primary); box-shadow: 0 1px 3px rgba(0,0,0,.2); }
.ds-navbar a { color: #fff; text-decoration: none; }
.ds-navbar .ds-title { font-size: 1.25rem; font-weight: 500; }
.ds-navbar .ds-repo { margin-left: auto; opacity: .85; }
.ds-navbar .ds-repo:hover { opacity: 1; }
.ds-sidebar { position: fixed; top: var(--ds-navbar); bottom: 0; left: 0; width: var(--ds-sidebar); overflow-y: auto;
  box-sizing: border-box; padding: 1.5rem .75rem 1.5rem 1rem; border-right: 1px solid var(--ds-border); background: #fff; font-size: .925rem; }
.ds-sidebar ul { list-style: none; margin: 0; padding: 0; }
.ds-sidebar li a { display: block; padding: .3rem .75rem; color: #595959; text-decoration: none; line-height: 1.35;
  border-left: 2px solid transparent; border-radius: 0 .25rem .25rem 0; }
.ds-sidebar li a:hover { color: var(--ds-primary); }
.ds-sidebar li a.active { color: var(--ds-primary); font-weight: 600; border-left-color: var(--ds-primary); background: rgba(39,128,227,.08); }
.ds-sidebar .ds-section { margin: 1rem .75rem .3rem; font-weight: 600; color: var(--ds-text); }
main { box-sizing: border-box; max-width: 58rem; margin: 0 calc(var(--ds-toc) + 2rem) 4rem calc(var(--ds-sidebar) + 2rem);
  padding-top: calc(var(--ds-navbar) + 1.5rem); }
.ds-toc { position: fixed; top: calc(var(--ds-navbar) + 1.5rem); right: 1rem; bottom: 1rem; width: var(--ds-toc); overflow-y: auto;
  box-sizing: border-box; padding-left: .8rem; border-left: 1px solid var(--ds-border); font-size: .85rem; }
.ds-toc h2 { margin: 0 0 .5rem; font-size: .9rem; font-weight: 600; }
.ds-toc ul { list-style: none; margin: 0; padding: 0; }
.ds-toc li { margin: .2rem 0; }
.ds-toc li.ds-h3 { padding-left: .8rem; }
.ds-toc a { color: var(--ds-muted); text-decoration: none; }
.ds-toc a:hover { color: var(--ds-primary); }
main .jp-RenderedHTMLCommon a { color: var(--ds-primary); }
main p.ds-description { font-style: italic; font-size: 135%; opacity: 70%; padding-left: 2px; }
/* nbdev's pages show no prompts, and outputs hang off a salmon line under their cell (nbdev's styles.css) */
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
.jp-Cell { padding: 0; margin-bottom: 1rem; }
.jp-RenderedText pre { margin-left: .8rem; padding-left: .6rem; border-left: 2px solid lightsalmon; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
@media (max-width: 1199px) { .ds-toc { display: none; } main { margin-right: 1.5rem; } }
@media (max-width: 767px) {
  .ds-sidebar { position: static; width: auto; margin-top: var(--ds-navbar); border-right: 0; border-bottom: 1px solid var(--ds-border); }
  main { margin: 0 1rem 3rem; padding-top: 1rem; } }
"""


def _layout(html_text: str, stem: str, sidebar: list, titles: dict, repo: str, css: list[str]) -> str:
    "Navbar, sidebar (this page marked), table of contents and stylesheets `css` around nbconvert's page."
    items, section = [], None
    for sec, page in sidebar:
        if sec != section and sec: items.append(f'<li class="ds-section">{html.escape(sec)}</li>')
        section = sec
        current = ' class="active" aria-current="page"' if page == stem else ''
        items.append(f'<li><a href="{page}.html"{current}>{html.escape(titles[page])}</a></li>')
    home = sidebar[0][1] if sidebar else 'index'
    nav = (f'<header class="ds-navbar"><a class="ds-title" href="{home}.html">{html.escape(titles.get(home, "depthseg"))}</a>'
           f'<a class="ds-repo" href="{html.escape(repo)}">GitHub</a></header>'
           f'<nav class="ds-sidebar" aria-label="pages"><ul>{"".join(items)}</ul></nav>')
    toc = [(int(m.group(1)), m.group(2), re.sub(r'<[^>]+>|¶', '', m.group(3)))
           for m in re.finditer(r'<h([23]) id="([^"]+)">(.*?)</h\1>', html_text, re.S)]
    if toc:
        nav += ('<nav class="ds-toc" aria-label="on this page"><h2>On this page</h2><ul>' +
                ''.join(f'<li class="ds-h{lvl}"><a href="#{i}">{t.strip()}</a></li>' for lvl, i, t in toc) + '</ul></nav>')
    html_text = html_text.replace('</head>', ''.join(f'<link rel="stylesheet" href="{c}">\n' for c in css) + '</head>', 1)
    return re.sub(r'(<body[^>]*>)', lambda m: m.group(1) + nav, html_text, count=1)


def build_site(executed: Path, out: Path) -> list[Path]:
    "HTML pages in `out` from the executed notebooks in `executed` (a copy of nbs/ with outputs)."
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.filters.markdown_mistune import markdown2html_mistune
    from nbconvert.preprocessors import TagRemovePreprocessor
    work = Path(tempfile.mkdtemp(prefix='depthseg-site-'))
    try:
        shutil.copy(ROOT/'pyproject.toml', work/'pyproject.toml')
        shutil.copytree(executed, work/'nbs')
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')])))
        r = subprocess.run([sys.executable, '-c', 'from nbdev.quarto import nbdev_proc_nbs; nbdev_proc_nbs()'], cwd=work,
                           capture_output=True, text=True, env=env)
        if r.returncode: raise RuntimeError(f'nbdev_proc_nbs failed:\n{r.stderr[-4000:]}')
        proc = work/'_proc'
        sidebar = _sidebar(proc)
        front = {p: _front_matter(nbformat.read(proc/f'{p}.ipynb', as_version=4)) for _, p in sidebar}
        titles = {p: fm['title'] for p, fm in front.items()}
        from nbdev.config import get_config
        repo = get_config(ROOT).git_url
        exporter = HTMLExporter(template_name='lab', exclude_input_prompt=True, exclude_output_prompt=True)
        exporter.register_preprocessor(TagRemovePreprocessor(remove_input_tags={'remove_input'}), enabled=True)
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob('*.html'): old.unlink()
        (out/'site.css').write_text(SITE_CSS)
        for f in proc.rglob('*'):  # styles.css, and pictures and other files the notebooks link to, as Quarto copies them
            rel = f.relative_to(proc)
            if f.is_file() and f.suffix not in ('.ipynb', '.yml', '.qmd', '.md') and not re.match(r'[_.]', rel.parts[0]):
                (out/rel).parent.mkdir(parents=True, exist_ok=True); shutil.copy(f, out/rel)
        for _, stem in sidebar:
            nb = nbformat.read(proc/f'{stem}.ipynb', as_version=4)
            fm = front[stem]
            nb.cells = [c for c in nb.cells if not (c.cell_type == 'raw' and c.source.startswith('---'))]
            own_badge = any('colab.research.google.com/github' in c.source for c in nb.cells if c.cell_type == 'markdown')
            desc = re.sub(r'^<p>|</p>$', '', markdown2html_mistune(fm['description']).strip())
            head = f"# {fm['title']}\n\n" + (f'<p class="ds-description">{desc}</p>\n\n' if desc else '')
            if not own_badge: head += f'[![Open In Colab]({COLAB_BADGE})]({colab_url(stem)})'
            cells = [nbformat.v4.new_markdown_cell(head)]
            for cell in nb.cells:
                cell.metadata.pop('execution', None)  # execnb's timings are floats, which nbformat's schema refuses
                if cell.cell_type == 'markdown' and re.fullmatch(r'\s*(<!--.*?-->\s*)*', cell.source, re.S): continue  # nbdev's notice
                if cell.cell_type == 'code':
                    d = _directives(cell.source)
                    if 'hide' in d or d.get('include') == 'false': continue  # Quarto's cell options, as Quarto reads them
                    cell.source = '\n'.join(l for l in cell.source.splitlines() if not l.startswith('#|'))
                    if d.get('output') == 'false': cell.outputs = []
                    if d.get('echo') == 'false' or re.fullmatch(r'show_doc\(.*\)', cell.source.strip()):
                        cell.metadata.setdefault('tags', []).append('remove_input')
                    for o in cell.get('outputs', []):
                        if 'text/markdown' in o.get('data', {}):  # show_doc's source link: its Quarto attributes as HTML
                            o['data']['text/markdown'] = re.sub(r'\[(\w+)\]\(([^)\s]+)\)\{target="_blank" style="([^"]*)"\}',
                                                                r'<a href="\2" target="_blank" style="\3">\1</a>', o['data']['text/markdown'])
                            o['data']['text/markdown'] = re.sub(r'\)\{target="_blank"[^}]*\}', ')', o['data']['text/markdown'])
                cells.append(cell)
            nb.cells = cells
            page, _ = exporter.from_notebook_node(nb, resources={'metadata': {'name': fm['title']}})
            page = re.sub(r'href="([\w.-]+)\.ipynb"', r'href="\1.html"', page)
            css = ['styles.css'] * (proc/'styles.css').exists() + ['site.css']  # the project's (nbs/_quarto.yml's css), then the layout
            (out/f'{stem}.html').write_text(_layout(page, stem, sidebar, titles, repo, css))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sorted(out.glob('*.html'))


class _Page(HTMLParser):
    "Links, pictures, headings (with the text under each), prompts and sidebar of a page."
    def __init__(self):
        super().__init__()
        self.refs, self.images, self.headings, self.sidebar = [], 0, [], []
        self._heading = self._skip = None; self._in_nav = self._in_sidebar = False
        self.sections = ['']  # text before the first heading, then the text under each heading
    def handle_starttag(self, tag, attrs):
        a = dict(attrs); cls = (a.get('class') or '').split()
        if tag == 'a' and a.get('href'): self.refs.append(a['href'])
        if tag == 'link' and a.get('href'): self.refs.append(a['href'])
        if tag == 'script' and a.get('src'): self.refs.append(a['src'])
        if tag == 'img' and a.get('src'):
            self.refs.append(a['src']); self.images += a['src'].startswith('data:image/')
        if tag in ('style', 'script'): self._skip = tag
        if tag == 'nav': self._in_nav, self._in_sidebar = True, 'ds-sidebar' in cls
        if tag == 'a' and self._in_sidebar: self.sidebar.append((a.get('href'), 'active' in cls))
        if tag == 'a' and 'anchor-link' in cls and self._heading: self._skip = 'a'
        if re.fullmatch(r'h[1-6]', tag) and not self._in_nav: self._heading = [int(tag[1]), '']
    def handle_endtag(self, tag):
        if tag == self._skip: self._skip = None
        if tag == 'nav': self._in_nav = self._in_sidebar = False
        if self._heading and tag == f'h{self._heading[0]}':
            self.headings.append((self._heading[0], ' '.join(self._heading[1].split()))); self.sections.append('')
            self._heading = None
    def handle_data(self, data):
        if self._skip or self._in_nav: return
        if self._heading: self._heading[1] += data
        else: self.sections[-1] += data


def _parse(text: str) -> _Page:
    p = _Page(); p.feed(text); return p


def _plain(s: str) -> str:
    "Text as a reader sees it, to compare markdown with a page: no backticks or emphasis, links as their text, one space."
    s = re.sub(r'\[([^\]]*)\]\([^)]*\)', r'\1', s)
    return ' '.join(re.sub(r'[`*]', '', s).split())


def _first_line(src: str) -> str:
    lines = [l for l in src.splitlines() if l.strip() and not l.startswith('#|')]
    return (lines[0] if lines else src.splitlines()[0] if src.strip() else '').strip()[:70]


def _cell_label(nb_name: str, cell: dict) -> str:
    src = ''.join(cell.get('source', ''))
    hidden = ' (hidden cell)' if 'hide' in _directives(src) else ''
    return f"{nb_name}: cell '{_first_line(src)}'{hidden}"


def _shown(text: str, n: int = 100) -> str:
    "A one-line excerpt of output `text` as a terminal would leave it (the last state of each \\r-rewritten line)."
    lines = [l.split('\r')[-1].rstrip() for l in text.split('\n')]
    one = ' | '.join(l for l in lines if l.strip())
    return repr(one[:n] + ('...' if len(one) > n else ''))


_NOISE = [  # (what, pattern) for lines of text output that a page must not show
    ('a progress bar', re.compile(r'\d+%\|')),
    ('a traceback', re.compile(r'Traceback \(most recent call last\)|^\s*File "[^"]+", line \d+', re.M)),
    ('a logging message', re.compile(r'^\s*(WARNING|WARN|ERROR|CRITICAL|FATAL|DEBUG)\b\s*[:\]]|^[WEF]\d{4} \d\d:\d\d:\d\d', re.M)),
    ('a warning', re.compile(r'\b\w*Warning:')),
]
MARKER = re.compile(r'^\s*(\.\.\.|…|\[\.\.\.\]|\(?\.\.\. ?\d+ more.*|.*\b(truncated|more lines?|cut here)\b.*)\s*$', re.I)
_TEXT_CALLS = {'read_text', 'decode', 'getvalue', 'read', 'dumps', 'format', 'join', 'strip', 'rstrip', 'lstrip', 'replace',
               'to_string', 'to_markdown', 'render', 'card_markdown'}
_SHOW_CALLS = {'print', 'display', 'Markdown', 'Code', 'HTML', 'Pretty', 'Text', 'write'}


def _text_kind(node, names: dict) -> str | None:
    "'text' if `node` evaluates to a str, 'lines' if to a list of its lines, as far as the source says."
    if isinstance(node, ast.Constant): return 'text' if isinstance(node.value, str) else None
    if isinstance(node, ast.JoinedStr): return 'text'
    if isinstance(node, ast.Name): return names.get(node.id)
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Mod)):
        return 'text' if 'text' in (_text_kind(node.left, names), _text_kind(node.right, names)) else None
    if isinstance(node, ast.Call):
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ''
        if name in ('str', 'repr') or name in _TEXT_CALLS: return 'text'
        if name in ('splitlines', 'readlines'): return 'lines'
        if name == 'split' and node.args and isinstance(node.args[0], ast.Constant) and node.args[0].value == '\n': return 'lines'
    return None


def _cuts(tree, names: dict):
    "(kind, n) for each `text[:n]` in what the cell shows: printed, displayed, or its last expression."
    shown = [a for n in ast.walk(tree) if isinstance(n, ast.Call) for a in n.args
             if (n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, 'attr', '')) in _SHOW_CALLS]
    if tree.body and isinstance(tree.body[-1], ast.Expr): shown.append(tree.body[-1].value)
    for root in shown:
        for n in ast.walk(root):
            if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Slice) and n.slice.upper is not None and n.slice.step is None \
               and (n.slice.lower is None or isinstance(n.slice.lower, ast.Constant) and n.slice.lower.value == 0):
                kind = _text_kind(n.value, names)
                if kind: yield kind, ast.unparse(n.slice.upper)


def _assign_kinds(tree, names: dict):
    for n in ast.walk(tree):
        if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
            kind = _text_kind(n.value, names)
            if kind: names[n.targets[0].id] = kind
            else: names.pop(n.targets[0].id, None)


def _texts(cell) -> list[str]:
    "The text outputs of `cell` a page shows as text (streams, and results with nothing richer than text/plain)."
    out = []
    for o in cell.get('outputs', []):
        if o['output_type'] == 'stream' and o.get('name') != 'stderr': out.append(''.join(o.get('text', '')))
        d = o.get('data', {})
        if 'text/markdown' in d: out.append(''.join(d['text/markdown']))
        elif set(d) == {'text/plain'}: out.append(''.join(d['text/plain']))
    return out


def output_problems(nb_name: str, nb: dict) -> list[str]:
    """What the outputs of notebook `nb` (its JSON) would show a reader that they must not: errors, anything on stderr,
    progress bars, logging lines, warnings and tracebacks in any text, widgets, and text cut mid-word. A cut output is
    fine when it is cut at a line boundary and says so on a line of its own (`...`, `… 12 more lines`, `(truncated)`)."""
    problems, names = [], {}
    for cell in nb['cells']:
        if cell['cell_type'] != 'code': continue
        src = ''.join(cell.get('source', ''))
        where = _cell_label(nb_name, cell)
        for o in cell.get('outputs', []):
            d, kind = o.get('data', {}), o['output_type']
            if kind == 'error':
                problems.append(f"{where} shows an error: {o.get('ename')}: {o.get('evalue', '')[:100]}"); continue
            if any(k.startswith('application/vnd.jupyter.widget') for k in d):
                problems.append(f'{where} shows a widget (a tqdm.notebook bar?), which a static page cannot show'); continue
            if kind == 'stream' and o.get('name') == 'stderr':
                text = ''.join(o.get('text', ''))
                what = next((w for w, rx in _NOISE if rx.search(text)), 'text')
                problems.append(f'{where} writes {what} to stderr: {_shown(text)}'); continue
            for text in _texts(dict(outputs=[o])):
                if kind == 'stream' or set(d) == {'text/plain'}:
                    for w, rx in _NOISE:
                        if m := rx.search(text):
                            line = text[text.rfind('\n', 0, m.start()) + 1:].split('\n')[0]
                            problems.append(f'{where} prints {w}: {_shown(line)}'); break
                last = next((l.split('\r')[-1] for l in reversed(text.split('\n')) if l.strip()), '')
                if re.search(r'\w(\.\.\.|…)\s*$', last) and not MARKER.match(last):
                    problems.append(f'{where} shows text cut mid-word: {_shown(last[-60:])}')
        lines = [l for l in src.splitlines() if not l.startswith('#|')]
        try: tree = ast.parse('\n'.join('pass' if re.match(r'\s*[!%]', l) else l for l in lines))
        except SyntaxError: continue
        texts = _texts(cell)
        for kind, n in dict.fromkeys(_cuts(tree, names)):
            if not texts: continue
            tail = _shown(texts[-1].rstrip('\n').split('\n')[-1][-60:])
            if kind == 'text': problems.append(f'{where} shows text cut at character {n}, mid-line: ends {tail}; cut whole lines and mark the cut')
            elif not any(MARKER.match(l) for t in texts for l in t.split('\n')):
                problems.append(f'{where} shows the first {n} lines of a text without a line saying it is cut: ends {tail}')
        _assign_kinds(tree, names)
    return problems


def _title_cell_problem(nb_name: str, nb: dict) -> str | None:
    "nbdev turns the first markdown cell with a `# title` into front matter and drops the rest of that cell from the page."
    from fastcore.nbio import cell_frontmatter, md_frontmatter
    fm = {}
    for cell in nb['cells']:
        src = ''.join(cell.get('source', ''))
        if cell['cell_type'] == 'raw': fm.update(cell_frontmatter(src) or {})
        elif cell['cell_type'] == 'markdown' and 'title' not in fm and md_frontmatter(src):
            lost = [l for l in src.splitlines() if l.strip() and not re.match(r'^#\s+\S|^>\s+\S|^-\s+\S.*:.*\S\s*$', l)
                    and 'colab.research.google.com/github' not in l]  # the page shows its own Colab badge
            if lost: return (f"{nb_name}: nbdev drops all but the title, description and '- key: value' lines of the title cell, so the page "
                             f"misses {len(lost)} line(s) of text from {lost[0].strip()[:60]!r}; put them in a cell of their own")
            return None
    return None


def _pictures_in(cell) -> list[str]:
    "80 characters of each picture among `cell`'s outputs, in each of its formats (a page shows one of them)."
    out = []
    for o in cell.get('outputs', []):
        d = o.get('data', {})
        b64 = [''.join(d[k]).replace('\n', '') for k in ('image/png', 'image/jpeg', 'image/gif') if k in d]
        heads = [b[len(b) // 2:len(b) // 2 + 80] for b in b64]  # the middle: every PNG starts and ends alike
        if 'image/svg+xml' in d: heads.append(re.sub(r'\s+', ' ', ''.join(d['image/svg+xml']))[-80:])
        if heads: out.append(heads)
    return out


def check_site(site: Path, executed: Path) -> list[str]:
    """Problems a reader would meet, one line each: missing pages, broken links, prompts, a sidebar without this page marked,
    a wrong Colab link, an exported name without its own heading and docstring, a picture missing, text nbdev drops, and
    outputs with errors, stderr, progress bars, logging, warnings, tracebacks or text cut mid-word."""
    problems = []
    nbs = sorted(p.stem for p in (ROOT/'nbs').glob('*.ipynb'))
    raw = {p.stem: p.read_text() for p in site.glob('*.html')}
    pages = {n: _parse(t) for n, t in raw.items()}
    problems += [f'no page for {n}.ipynb' for n in nbs if n not in pages]
    for name, page in sorted(pages.items()):
        for ref in page.refs:
            if re.match(r'^(https?:|data:|mailto:|#)', ref): continue
            if not (site/ref.split('#')[0]).exists(): problems.append(f'{name}.html: broken link {ref}')
        prompts = re.findall(r'<div class="jp-(?:Input|Output)Prompt[^"]*">\s*([^<\s][^<]*)</div>', raw[name])
        if prompts: problems.append(f'{name}.html shows {len(prompts)} prompts, e.g. {html.unescape(prompts[0]).strip()!r}')
        links = [h for h, _ in page.sidebar]
        if sorted(links) != sorted(f'{p}.html' for p in pages) or [h for h, active in page.sidebar if active] != [f'{name}.html']:
            problems.append(f'{name}.html: the sidebar does not list every page once with this one marked current')
        colab = [r for r in page.refs if 'colab.research.google.com/github' in r]
        if colab != [colab_url(name)]: problems.append(f'{name}.html: Colab links {colab}, not [{colab_url(name)}]')
    documented = 0
    for mod in sorted((ROOT/'depthseg').glob('*.py')):
        src = re.search(r'^# AUTOGENERATED! DO NOT EDIT! File to edit: \.\./nbs/([\w.-]+)\.ipynb', mod.read_text(), re.M)
        if not src: continue
        m = importlib.import_module(f'depthseg.{mod.stem}')
        page = pages.get(src.group(1))
        for name in getattr(m, '__all__', []):
            obj = getattr(m, name)
            if not callable(obj) or getattr(obj, '__module__', '') != m.__name__: continue
            doc = (obj.__doc__ or '').strip().splitlines()
            if not doc: problems.append(f'depthseg.{mod.stem}.{name} has no docstring'); continue
            if page is None: continue
            documented += 1
            at = [i for i, (_, text) in enumerate(page.headings) if text == name]
            if not at: problems.append(f'{src.group(1)}.html has no heading {name!r} for depthseg.{mod.stem}.{name}'); continue
            if not any(_plain(doc[0])[:60] in _plain(page.sections[i + 1]) for i in at):
                problems.append(f'{src.group(1)}.html: the docstring of {name} is not under its heading {name!r}')
    if not documented: problems.append('no exported name of depthseg was looked for on a page: does nbdev still name the notebooks?')
    for nb_path in sorted(executed.glob('*.ipynb')):
        nb, name = json.loads(nb_path.read_text()), nb_path.name
        problems += output_problems(name, nb)
        if p := _title_cell_problem(name, nb): problems.append(p)
        text = raw.get(nb_path.stem)
        if text is None: continue
        for cell in nb['cells']:
            d = _directives(''.join(cell.get('source', '')))
            if cell['cell_type'] != 'code' or 'hide' in d or d.get('include') == 'false' or d.get('output') == 'false': continue
            missing = [h for h in _pictures_in(cell) if not any(x in text for x in h)]
            if missing: problems.append(f'{_cell_label(name, cell)}: {len(missing)} of its pictures not on {nb_path.stem}.html')
    for nb_path in sorted((ROOT/'nbs').glob('*.ipynb')):  # the outputs committed with the notebooks, which Quarto publishes
        problems += [f'nbs/{p} (as committed)' for p in output_problems(nb_path.name, json.loads(nb_path.read_text()))]
    return problems


def pictures(site: Path) -> dict[str, int]:
    "Embedded pictures per page."
    return {p.stem: _parse(p.read_text()).images for p in site.glob('*.html')}


def execute_notebooks(dest: Path) -> Path:
    "Copies of nbs/ in `dest`, each run top to bottom as the tests run it, outputs saved."
    import nbdev.test
    from nbdev.config import get_config
    shutil.copytree(ROOT/'nbs', dest)
    for nb in sorted(dest.glob('*.ipynb')):
        ok, _ = nbdev.test.test_nb(nb, skip_flags=get_config(ROOT).tst_flags.split(), save=True)
        assert ok, f'{nb.name} failed'
    return dest


if __name__ == '__main__':
    sys.path.insert(0, str(ROOT))  # the checkout being checked is the one imported
    t0 = time.time()
    executed = Path(sys.argv[1]) if len(sys.argv) > 1 else execute_notebooks(Path(tempfile.mkdtemp())/'nbs')
    t1 = time.time()
    pages = build_site(executed, ROOT/'_site')
    t2 = time.time()
    print(f'{len(pages)} pages in {ROOT/"_site"}; pictures: {pictures(ROOT/"_site")}')
    problems = check_site(ROOT/'_site', executed)
    print('\n'.join(problems) or 'no problems')
    print(f'executed in {t1 - t0:.0f}s ({executed}), built in {t2 - t1:.0f}s, checked in {time.time() - t2:.0f}s', file=sys.stderr)
    sys.exit(1 if problems else 0)
