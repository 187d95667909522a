"Mistakes on the command line: one line naming the subcommand and the problem, exit 2, no traceback, nothing written."
import subprocess, sys

import pytest

from depthseg.depth import NO_WEIGHTS
from depthseg.samples import sample_dir

BG, FG = sample_dir('backgrounds'), sample_dir('foregrounds')
MISTAKES = [  # (arguments, with DS an existing dataset folder and NEW one that must not appear; what the message says)
    (['backgrounds', BG, 'NEW', '--quality', '0'], 'quality must be between 1 and 100, not 0'),
    (['backgrounds', BG, 'NEW', '--size', '-3'], 'size must be between 8 and 4096, not -3'),
    (['backgrounds', BG, 'NEW', '--crop', 'square'], 'crop must be one of'),
    (['backgrounds', BG, 'NEW', '--near-bits', '65'], 'near-bits must be between 0 and 64'),
    (['backgrounds', BG, BG/'out'], 'the source overlap'),
    (['foregrounds', FG, 'NEW', '--threshold', '300'], 'threshold must be between 0 and 254, not 300'),
    (['foregrounds', FG, 'NEW', '--height', '0'], 'height must be between 8 and 4096, not 0'),
    (['composites', 'DS', '--positions', '0'], 'positions must be at least 1, not 0'),
    (['composites', 'DS', '--positions', '-3'], 'positions must be at least 1, not -3'),
    (['composites', 'DS', '--quality', '101'], 'quality must be between 1 and 100'),
    (['composites', 'DS', '--backgrounds', '-1'], 'backgrounds must be at least 1, not -1'),
    (['composites', 'DS', '--workers', '0'], 'workers must be at least 1, not 0'),
    (['depth', 'DS', '--resolution', '224,224'], 'resolution must be HxW'),
    (['depth', 'DS', '--batch-size', '0'], 'batch size must be at least 1'),
    (['depth', 'DS', '--limit', '0'], 'limit must be at least 1, not 0'),
    (['stats', 'DS', '--workers', '0'], 'workers must be at least 1'),
    (['pack', 'DS', 'NEW', '--shard-size', '0'], 'shard-size must be at least 1, not 0'),
    (['pack', 'DS', 'NEW', '--name', '../x'], 'shard names take letters'),
    (['pull', 'DS', 'NEW', '--workers', '0'], 'workers must be at least 1'),
    (['tfrecord', 'DS', 'NEW', '--examples-per-shard', '0'], 'examples-per-shard must be at least 1, not 0'),
    (['clean', 'DS', 'everything'], 'stage must be one of'),
    (['demo', 'DS'], 'not empty'),
    (['pack', BG.parent, 'DS'], "holds 'keep.txt', which pack did not write"),
    (['stats', 'DS'], 'no images of a depthseg dataset to describe'),
    (['stats', 'NEW'], 'no such dataset folder'),
    (['composites', 'DS'], 'no bg_*.jpg files; run `depthseg backgrounds'),
    (['depth', 'DS'], 'manifest.csv: not there; run `depthseg composites'),
    (['pack', 'DS', 'NEW'], 'no file of a depthseg dataset to pack'),
    (['tfrecord', 'DS', 'NEW'], 'manifest.csv: not there'),
    (['backgrounds', BG, 'NEW', '--size', '100000'], 'size must be between 8 and 4096, not 100000'),
    (['foregrounds', FG, 'NEW', '--height', '100000'], 'height must be between 8 and 4096'),
    (['depth', 'DS', '--resolution', '3x3'], 'DenseDepth needs a resolution in multiples of 32'),
    (['depth', 'DS', '--resolution', '99999'], 'resolution must be at most 4096x4096'),
    (['depth', 'DS', '--calibration', '0'], 'calibration must be at least 1, not 0'),
    (['composites', 'DS', '--positions', 'abc'], "invalid int value: 'abc'"),
    (['clean', 'DS', 'composites'], 'not a depthseg dataset'),
    (['pack', 'DS', 'DS'], 'inside the dataset'),
    (['demo', 'NEW', '--weights', 'missing.h5'], 'missing.h5: no weights file there'),
    (['demo', 'NEW', '--positions', '0'], 'positions must be at least 1'),
]


@pytest.mark.parametrize('args, says', MISTAKES, ids=[' '.join(map(str, a[:1] + a[2:])) for a, _ in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2(args, says, tmp_path):
    ds = tmp_path/'ds'; ds.mkdir(); (ds/'keep.txt').write_text('kept')
    args = [str({'DS': ds, 'NEW': tmp_path/'new'}.get(a, a)) for a in args]
    before = sorted(p for p in tmp_path.rglob('*'))
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', *args], capture_output=True, text=True)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr
    assert len(lines) == 1 and lines[0].startswith(f'depthseg {args[0]}: error: ') and says in lines[0], r.stderr
    assert sorted(p for p in tmp_path.rglob('*')) == before and not (BG/'out').exists()  # nothing written


def test_a_missing_optional_dependency_names_its_install_line(dataset, tmp_path):
    "Without KerasHub (hidden from the import system), the Depth Anything backend says how to install it."
    from depthseg.composites import CompositesJob, make_composites
    make_composites(dataset, CompositesJob(positions=1), progress=False)
    hide = "import sys; sys.modules['keras_hub'] = None; from depthseg.cli import main; sys.exit(main(sys.argv[1:]))"
    r = subprocess.run([sys.executable, '-c', hide, 'depth', str(dataset), '--backend', 'depth_anything', '--weights', str(tmp_path/'da.keras')],
                       capture_output=True, text=True)
    assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == 'depthseg depth: error: this needs keras_hub: pip install "depthseg[hub]"', r.stderr


def test_depth_without_weights_is_one_line_before_tensorflow_loads(dataset):
    "Only the error reaches the terminal: not TensorFlow's C++ log lines, which ignore TF_CPP_MIN_LOG_LEVEL."
    from depthseg.composites import CompositesJob, make_composites
    make_composites(dataset, CompositesJob(positions=1), progress=False)
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(dataset)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.splitlines() == [f'depthseg depth: error: {NO_WEIGHTS}'], r.stderr
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'tfrecord', str(dataset), str(dataset.parent/'records')], capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and 'run `depthseg stats' in r.stderr, r.stderr  # TensorFlow loaded, quiet


def test_depthseg_alone_shows_what_it_can_do():
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli'], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith('usage: depthseg') and 'demo' in r.stderr, r.stderr
