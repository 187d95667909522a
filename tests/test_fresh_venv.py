"""A fresh virtual environment, as a new Colab runtime or a new machine has it: notebooks run from their install cell,
and every README code block runs as written. The repository URL (pyproject.toml) leads to this working tree."""
import os, re, shutil, subprocess, tomllib, venv

import pytest

from conftest import ROOT
from depthseg.samples import sample_dir
from depthseg.testing import reference_nyu_h5

URL = tomllib.loads((ROOT/'pyproject.toml').read_text())['project']['urls']['Repository']
COLAB_IPYTHON = 'ipython==7.34.0'  # the IPython of Colab's kernel


def run(cmd, env, cwd, **kw):
    r = subprocess.run([str(c) for c in cmd], env=env, cwd=cwd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f'{cmd} exit status {r.returncode}\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}'
    return r


@pytest.fixture(scope='module')
def repo(tmp_path_factory):
    "This working tree (tracked and untracked, not ignored) as a git repository: what `pip install git+URL` clones."
    dst = tmp_path_factory.mktemp('repo')
    listed = subprocess.run(['git', 'ls-files', '-coz', '--exclude-standard'], cwd=ROOT, capture_output=True, check=True)
    for name in filter(None, listed.stdout.decode().split('\0')):
        if (ROOT/name).is_file(): (dst/name).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/name, dst/name)
    git = ['git', '-c', 'user.name=test', '-c', 'user.email=test@example.com']
    for args in (['init', '-q'], ['add', '-A'], ['commit', '-qm', 'working tree']): subprocess.run(git + args, cwd=dst, check=True)
    return dst


@pytest.fixture(scope='module')
def fresh(repo, tmp_path_factory):
    "(environment, folder) of a new venv holding only Colab's IPython and an importable `google.colab`."
    home = tmp_path_factory.mktemp('fresh')
    venv.create(home/'venv', with_pip=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(('PYTHON', 'VIRTUAL_ENV', 'PIP_', 'GIT_'))}
    env.update(PATH=f"{home/'venv/bin'}{os.pathsep}{env['PATH']}", VIRTUAL_ENV=str(home/'venv'), MPLBACKEND='Agg',
               PIP_DISABLE_PIP_VERSION_CHECK='1', PIP_NO_INPUT='1',
               # git (and so pip) fetches the repository URL from the working tree's copy
               GIT_CONFIG_COUNT='1', GIT_CONFIG_KEY_0=f'url.{repo.as_uri()}.insteadOf', GIT_CONFIG_VALUE_0=URL)
    run(['pip', 'install', '-q', COLAB_IPYTHON], env, home)
    colab = next((home/'venv/lib').glob('python3*/site-packages'))/'google/colab'
    colab.mkdir(parents=True)  # `google` stays a namespace package, shared with protobuf
    (colab/'__init__.py').write_text('"Stand-in for the module every Colab runtime has."\n')
    (colab/'drive.py').write_text('def mount(mountpoint, **kwargs):\n    "Colab mounts Drive at `mountpoint`; there is no Drive here."\n')
    return env, home


@pytest.mark.parametrize('nb', ['quickstart', '08_composites', '12_data'])
def test_notebook_runs_as_colab_runs_it(fresh, nb):
    "Install cell first (the only thing installed), then every cell in IPython, `!` lines included."
    env, home = fresh
    work = home/f'content-{nb}'; work.mkdir()
    out = run(['python', ROOT/'tests/run_as_colab.py', ROOT/f'nbs/{nb}.ipynb'], env, work).stdout
    assert 'cell 0: ok' in out or 'cell 1: ok' in out, out  # the install cell ran
    installed = run(['pip', 'show', 'depthseg'], env, work).stdout
    assert 'Location:' in installed and str(home/'venv') in installed, installed


def readme_blocks() -> list[tuple[str, str]]:
    return re.findall(r'^```(sh|python)\n(.*?)^```', (ROOT/'README.md').read_text(), re.S | re.M)


def test_readme_test_command_is_ci():
    tests = [code for lang, code in readme_blocks() if 'pytest' in code]
    assert len(tests) == 1 and tests[0].strip() in (ROOT/'.ci/run').read_text(), tests


def _user_files(drive):
    "What the README asks for on Drive: photos of scenes, cut-outs of people, DenseDepth's nyu.h5 (random weights here)."
    for kind, folder, keep in (('backgrounds', 'backgrounds', 2), ('foregrounds', 'cutouts', 1)):
        (drive/folder).mkdir(parents=True)
        for p in sorted(sample_dir(kind).iterdir())[:keep]: shutil.copy(p, drive/folder/p.name)
    reference_nyu_h5(drive/'nyu.h5')


@pytest.mark.parametrize('i', range(len(readme_blocks())))
def test_readme_block_runs_as_written(fresh, repo, i):
    """Shell blocks in a clone with the fresh venv on PATH, Python blocks with its python. The settings a block starts
    with take values of the test: `DRIVE` a folder that persists from block to block, as Drive does, `LOCAL` a new one
    each time, as a new runtime's disk, and POSITIONS 1, which keeps the depth stage short on a CPU."""
    lang, code = readme_blocks()[i]
    if 'pytest' in code: pytest.skip('the test command: it is what runs this test')
    env, home = fresh
    work = home/f'readme-{i}'; shutil.copytree(repo, work)
    if lang == 'python': run(['python', '-c', code], env, work, timeout=900); return
    values = dict(DRIVE=home/'drive', LOCAL=work/'local', POSITIONS=1)
    names = re.findall(r'^(\w+)=', code, re.M)
    assert set(names) <= set(values), f'a setting this test gives no value: {names}'
    code = re.sub(r'^(\w+)=\S*', lambda m: f'{m.group(1)}={values[m.group(1)]}', code, flags=re.M)
    if 'DRIVE' in names and not (home/'drive').exists(): _user_files(home/'drive')
    run(['bash', '-euo', 'pipefail', '-c', code], env, work, timeout=900)
