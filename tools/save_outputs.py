"""Run every notebook of nbs/ and commit the outputs that show results: pictures, tables, rendered docs.

    python tools/save_outputs.py [NOTEBOOK ...]

Printed text (progress bars, reports naming temporary folders) is dropped, so what is saved depends only on the
code and the sample data: the same run gives the same notebooks. Run it after changing a notebook, then commit.
"""
import json, os, subprocess, sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHOWN = ('image/png', 'text/markdown', 'text/html')  # results a reader sees


def keep(output) -> bool:
    return output.get('output_type') in ('display_data', 'execute_result') and any(k in output.get('data', {}) for k in SHOWN)


def save(nb: Path) -> str:
    import nbdev.test
    os.chdir(nb.parent)
    ok, _ = nbdev.test.test_nb(nb, skip_flags=['slow', 'gpu'], save=True)
    if not ok: return f'{nb.name}: failed, not saved'
    data = json.loads(nb.read_text())
    for cell in data['cells']:
        if cell['cell_type'] == 'code':
            cell['outputs'] = [{k: v for k, v in o.items() if k != 'execution_count'} | ({'execution_count': None} if o['output_type'] == 'execute_result' else {})
                               for o in cell.get('outputs', []) if keep(o)]
            cell['execution_count'] = None
    nb.write_text(json.dumps(data, indent=1, ensure_ascii=False) + '\n')
    return f'{nb.name}: saved'


def run(nb: Path) -> str:
    "`save(nb)` in a fresh Python, as a notebook runs alone (its stages start processes of their own)."
    env = os.environ | {'TF_CPP_MIN_LOG_LEVEL': '3', 'IN_TEST': '1'}
    r = subprocess.run([sys.executable, __file__, '--one', str(nb)], env=env, capture_output=True, text=True)
    return r.stdout.strip() or f'{nb.name}: failed\n{r.stderr[-3000:]}'


if __name__ == '__main__':
    if sys.argv[1:2] == ['--one']: print(save(Path(sys.argv[2]))); sys.exit()
    nbs = [Path(a).resolve() for a in sys.argv[1:]] or sorted((ROOT/'nbs').glob('*.ipynb'))
    with ThreadPoolExecutor(2) as pool: print('\n'.join(pool.map(run, nbs)))
    subprocess.run(['nbdev-clean'], cwd=ROOT, check=True)
