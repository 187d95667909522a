"Untrusted records, stale stages, concurrent runs and kill -9: a dataset stays one consistent dataset, and every failure is one line."
import csv, hashlib, json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import pytest

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import read_csv
from depthseg.layout import (CARD, CARD_JSON, COMPOSITES, COMPOSITES_RECORD, DEPTH, DEPTH_RECORD, FG, LOCK, MANIFEST, MANIFEST_FIELDS,
                             MASKS, STAGE_STATS, STAGES, fg_files)
from depthseg.stats import write_card
from depthseg.testing import tiny_depth_anything

CLI = [sys.executable, '-m', 'depthseg.cli']


def run(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, **kw)


def tree(folder: Path) -> dict[str, str]:
    "SHA-256 of every file under `folder`, by relative path."
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob('.*') if p.name.endswith('.tmp') or p.name == LOCK]


def one_line_error(r: subprocess.CompletedProcess, command: str, *parts: str, status: int = 1):
    "`r` failed with exit `status` (1: bad data; 2: a mistake in the arguments) and one line on stderr naming `command` and each of `parts`."
    lines = [l for l in r.stderr.splitlines() if l.startswith('depthseg ')]  # not progress bars or TensorFlow's logs
    assert r.returncode == status and 'Traceback' not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith(f'depthseg {command}: error: '), r.stderr
    assert all(p in lines[0] for p in parts), lines[0]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    return tiny_depth_anything(tmp_path_factory.mktemp('model')/'tiny.keras', size=112)


def depth_args(tiny):
    return ['--backend', 'depth_anything', '--weights', tiny, '--batch-size', '4']


@pytest.fixture
def composed(dataset):
    make_composites(dataset, CompositesJob(positions=1), backgrounds=2, foregrounds=3, workers=1, progress=False)
    return dataset


def edit_manifest(ds: Path, line: int, **changes):
    "Change row `line` (2 = the first row) of the manifest of `ds`."
    rows = read_csv(ds/MANIFEST)
    rows[line - 2] |= changes
    with open(ds/MANIFEST, 'w', newline='') as f:
        w = csv.DictWriter(f, MANIFEST_FIELDS, lineterminator='\n'); w.writeheader(); w.writerows(rows)


# --- records read from the dataset are untrusted ---

def test_a_manifest_path_outside_the_dataset_is_refused(composed, tiny, tmp_path):
    secret = tmp_path/'secret.jpg'; shutil.copy(composed/read_csv(composed/MANIFEST)[0]['image'], secret)
    edit_manifest(composed, 3, image='../secret.jpg')
    before = tree(tmp_path)
    for args in (['depth', composed, *depth_args(tiny)], ['stats', composed]):
        one_line_error(run(*args), args[0], f'{MANIFEST} line 3', "'../secret.jpg'")
    assert tree(tmp_path) == before  # nothing read and written beside it, nothing made


@pytest.mark.parametrize('change, why', [(dict(x='abc'), "'x' is 'abc', not a whole number"), (dict(width=''), "no 'width'"),
                                         (dict(id='bg_000_fg_002_flip_05'), 'does not match its fields')])
def test_a_malformed_manifest_row_is_named(composed, change, why):
    edit_manifest(composed, 4, **change)
    one_line_error(run('stats', composed), 'stats', f'{MANIFEST} line 4', why)


def test_a_truncated_manifest_is_named(composed):
    data = (composed/MANIFEST).read_bytes(); (composed/MANIFEST).write_bytes(data[:len(data) - 40])
    one_line_error(run('stats', composed), 'stats', f'{MANIFEST} line {len(data.splitlines())}')


@pytest.mark.parametrize('content, why', [(b'{"positions": ', 'corrupt JSON'), (b'[]', 'not a JSON object')])
def test_a_corrupt_record_is_named(composed, content, why):
    (composed/COMPOSITES_RECORD).write_bytes(content)
    one_line_error(run('composites', composed, '--positions', 1, '--backgrounds', 2, '--foregrounds', 3), 'composites', COMPOSITES_RECORD, why)
    r = run('--debug', 'composites', composed, '--positions', 1)
    assert r.returncode != 0 and 'Traceback' in r.stderr  # --debug shows where


def test_an_output_path_that_is_a_file_is_one_line(sources, tmp_path):
    (tmp_path/'out').write_text('a file')
    one_line_error(run('foregrounds', sources.parent/'none', tmp_path/'out'), 'foregrounds')
    from depthseg.samples import sample_dir
    one_line_error(run('backgrounds', sample_dir('backgrounds'), tmp_path/'out'), 'backgrounds', str(tmp_path/'out'))


# --- lineage: nothing stale survives, one command removes a stage ---

def test_depth_of_other_composites_is_never_reused(composed, tiny):
    assert run('depth', composed, *depth_args(tiny)).returncode == 0
    for rel in (COMPOSITES, MASKS, MANIFEST, COMPOSITES_RECORD): shutil.rmtree(composed/rel) if (composed/rel).is_dir() else (composed/rel).unlink()
    fg = composed/fg_files('fg_000')[0]
    from PIL import Image
    Image.open(fg).transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(fg)  # the foreground changed by hand
    assert run('composites', composed, '--positions', 1, '--backgrounds', 2, '--foregrounds', 3).returncode == 0
    one_line_error(run('depth', composed, *depth_args(tiny)), 'depth', DEPTH_RECORD, f'{COMPOSITES_RECORD} changed since', f'depthseg clean {composed} depth')
    one_line_error(run('stats', composed), 'stats', DEPTH_RECORD, f'depthseg clean {composed} depth')
    r = run('clean', composed, 'depth'); assert r.returncode == 0 and DEPTH in r.stdout
    r = run('depth', composed, *depth_args(tiny)); assert r.returncode == 0, r.stderr
    assert '(12 made by this run)' in r.stdout  # every map made again, none of the old ones kept


def test_clean_removes_a_stage_and_what_was_made_from_it(composed, tiny):
    assert run('depth', composed, *depth_args(tiny)).returncode == 0 and run('stats', composed).returncode == 0
    r = run('clean', composed, 'composites'); assert r.returncode == 0, r.stderr
    left = {p.name for p in composed.iterdir()}
    assert not left & {COMPOSITES, MASKS, MANIFEST, COMPOSITES_RECORD, DEPTH, DEPTH_RECORD, STAGE_STATS, CARD_JSON, CARD}
    assert {STAGES['backgrounds'].record, FG} <= left
    assert run('composites', composed, '--positions', 1).returncode == 0  # made again from scratch


def test_maps_left_without_their_record_are_refused(composed, tiny):
    assert run('depth', composed, *depth_args(tiny)).returncode == 0
    (composed/DEPTH_RECORD).unlink()
    one_line_error(run('depth', composed, *depth_args(tiny)), 'depth', f'{DEPTH_RECORD}: not there, but depth made by an earlier run are')


# --- one writer at a time ---

def slow_composites(ds: Path) -> subprocess.Popen:
    "Start a composites run on `ds` that takes a while, and return once it holds the lock."
    proc = subprocess.Popen([*CLI, 'composites', str(ds), '--positions', '20', '--workers', '1'], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (ds/COMPOSITES).exists() and time.monotonic() < deadline: time.sleep(0.02)
    assert proc.poll() is None, 'finished before the test could run beside it'
    return proc


def holding(ds: Path, stage: str) -> subprocess.Popen:
    "A process holding the lock of `ds` as a run of `stage` does, until its stdin is closed."
    code = f"import sys\nfrom depthseg.core import dataset_lock\nwith dataset_lock({str(ds)!r}, {stage!r}):\n    print('held', flush=True); sys.stdin.read()"
    proc = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == 'held\n'
    return proc


def test_readers_and_writers_are_refused_while_a_stage_runs(composed, tmp_path):
    before, holder = tree(composed), holding(composed, 'composites')
    for args in (['composites', composed, '--positions', 1], ['stats', composed], ['depth', composed, '--weights', 'nyu.h5'],
                 ['pack', composed, tmp_path/'packed'], ['tfrecord', composed, tmp_path/'tfr'], ['clean', composed, 'depth']):
        one_line_error(run(*args), args[0], 'is using this dataset', f'`depthseg composites` (pid {holder.pid}', '--wait')
    holder.stdin.close(); holder.wait()
    assert tree(composed) == before and not (tmp_path/'packed').exists() and not temporaries(composed)


def test_two_writers_at_once_give_one_clean_dataset(sources, tmp_path):
    ds, clean = (Path(shutil.copytree(sources, tmp_path/n)) for n in ('dataset', 'clean'))
    assert run('composites', clean, '--positions', 20).returncode == 0
    first = slow_composites(ds)
    os.killpg(first.pid, signal.SIGSTOP)  # it holds the lock and makes no progress: the second writer meets it however fast the first is
    one_line_error(run('composites', ds, '--positions', 20), 'composites', 'is using this dataset', '`depthseg composites` (pid')
    os.killpg(first.pid, signal.SIGCONT)
    waited = run('composites', ds, '--positions', 20, '--wait')  # waits for the first, then finds everything made
    assert first.wait() == 0 and waited.returncode == 0, waited.stderr
    assert tree(ds) == tree(clean) and not temporaries(ds)


def test_a_lock_left_by_a_killed_run_is_taken_over(sources, tmp_path):
    ds, clean = (Path(shutil.copytree(sources, tmp_path/n)) for n in ('dataset', 'clean'))
    assert run('composites', clean, '--positions', 20).returncode == 0
    proc = slow_composites(ds)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    r = run('composites', ds, '--positions', 20); assert r.returncode == 0, r.stderr
    assert tree(ds) == tree(clean) and not temporaries(ds)


# --- kill -9 at any moment: nothing left behind, the same result ---

def killed_then_rerun(args: list, ready, ds: Path):
    "Run `depthseg *args`, kill it with SIGKILL once `ready()` is true, then run it again to the end."
    proc = subprocess.Popen([*CLI, *map(str, args)], start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while proc.poll() is None and not ready() and time.monotonic() < deadline: time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    r = run(*args); assert r.returncode == 0, r.stderr
    assert not temporaries(ds)


def test_stats_killed_and_rerun(composed, tmp_path):
    other = Path(shutil.copytree(composed, tmp_path/'other'/composed.name))  # the card holds the folder's name
    assert run('stats', other).returncode == 0
    killed_then_rerun(['stats', composed], lambda: (composed/CARD).exists(), composed)
    assert tree(composed) == tree(other)


def test_tfrecord_killed_and_rerun_gives_the_same_bytes(composed, tmp_path):
    write_card(composed, progress=False)
    clean, out = tmp_path/'clean', tmp_path/'tfr'
    assert run('tfrecord', composed, clean, '--examples-per-shard', 1).returncode == 0
    killed_then_rerun(['tfrecord', composed, out, '--examples-per-shard', 1], lambda: out.exists() and len(list(out.glob('*'))) > 2, out)
    assert tree(out) == tree(clean)
    assert run('tfrecord', composed, clean, '--examples-per-shard', 1).returncode == 0 and tree(out) == tree(clean)  # and run again


def test_tfrecord_refuses_a_stale_card(composed, tmp_path):
    write_card(composed, progress=False)
    (composed/COMPOSITES_RECORD).write_bytes((composed/COMPOSITES_RECORD).read_bytes() + b'\n')
    one_line_error(run('tfrecord', composed, tmp_path/'tfr'), 'tfrecord', f'{COMPOSITES_RECORD} changed since')


def test_pack_killed_and_rerun_gives_the_same_shards(composed, tmp_path):
    clean, out = tmp_path/'clean', tmp_path/'packed'
    assert run('pack', composed, clean, '--shard-size', 20_000).returncode == 0
    killed_then_rerun(['pack', composed, out, '--shard-size', 20_000], lambda: out.exists() and len(list(out.glob('*.tar'))) > 2, out)
    assert tree(out) == tree(clean) and not temporaries(composed)


def test_a_source_replaced_by_hand_is_caught(composed, tmp_path):
    write_card(composed, progress=False)
    bg = composed/'bg'/'bg_001.jpg'; bg.write_bytes((composed/'bg'/'bg_000.jpg').read_bytes())
    for args in (['stats', composed], ['pack', composed, tmp_path/'p'], ['tfrecord', composed, tmp_path/'t']):
        one_line_error(run(*args), args[0], 'bg_001.jpg: not the file the composites were made from', f'depthseg clean {composed} composites')


def test_composites_without_their_record_are_caught(composed, tiny, tmp_path):
    (composed/COMPOSITES_RECORD).unlink()
    for args in (['depth', composed, *depth_args(tiny)], ['stats', composed], ['pack', composed, tmp_path/'p']):
        one_line_error(run(*args), args[0], f'{COMPOSITES_RECORD}: not there, but composites made by an earlier run are', 'clean')


@pytest.mark.parametrize('content, why', [(b'id,bg\n', 'missing or empty'), (b'', 'missing or empty')])
def test_an_emptied_manifest_is_caught(composed, content, why):
    (composed/MANIFEST).write_bytes(content)
    one_line_error(run('stats', composed), 'stats', MANIFEST, why)


def test_a_corrupt_lineage_is_one_line(composed):
    write_card(composed, progress=False)
    card = json.loads((composed/CARD_JSON).read_text()); card['made_from'] = ['x']; (composed/CARD_JSON).write_text(json.dumps(card))
    one_line_error(run('pack', composed, composed.parent/'p'), 'pack', CARD_JSON, "'made_from' is not a table")


def test_outputs_inside_the_dataset_are_refused(composed):
    write_card(composed, progress=False)
    for args in (['pack', composed, composed/'shards'], ['tfrecord', composed, composed]):
        one_line_error(run(*args), args[0], 'inside the dataset', status=2)
    assert not (composed/'shards').exists()


def test_a_repeated_manifest_row_is_named(composed):
    rows = read_csv(composed/MANIFEST); edit_manifest(composed, 5, **rows[0])
    one_line_error(run('stats', composed), 'stats', f'{MANIFEST} line 5', f"{rows[0]['id']} comes twice")
