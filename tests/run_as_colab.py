"""Run a notebook as Colab's "Run all" does: every code cell in one IPython shell, `!` and `%` lines included.

    python run_as_colab.py NOTEBOOK

The install cell runs (it is `#| eval: false` only so that the tests here skip it); other `#| eval: false` cells are
the ones a user runs by hand at full size, and are skipped. Prints one line per cell; exits 1 at the first cell that fails.
"""
import json, sys

from IPython.core.interactiveshell import InteractiveShell


def main(path: str) -> int:
    import google.colab  # noqa: F401  (Colab imports it before any cell runs; the install cell checks for it)
    shell = InteractiveShell.instance()
    cells = [''.join(c['source']) for c in json.load(open(path))['cells'] if c['cell_type'] == 'code']
    for i, src in enumerate(cells):
        install = "'google.colab' in sys.modules" in src
        if '#| eval: false' in src and not install: print(f'cell {i}: skipped (#| eval: false)', flush=True); continue
        result = shell.run_cell(src, store_history=True)
        failed = result.error_before_exec or result.error_in_exec
        if install and shell.user_ns.get('_exit_code'): failed = f"`!pip install` exit status {shell.user_ns['_exit_code']}"
        if failed:
            print(f'cell {i} failed: {failed!r}', flush=True)
            return 1
        print(f'cell {i}: ok', flush=True)
    return 0


if __name__ == '__main__': sys.exit(main(sys.argv[1]))
