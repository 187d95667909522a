"Depth stage: nyu.h5 as the reference saved it (Keras 2) through the real loader, local and over HTTP; kill and resume."
import functools, http.server, os, shutil, signal, subprocess, sys, threading, time
from pathlib import Path

import numpy as np
import pytest

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import file_sha256, read_csv
from depthseg.depth import DepthSpec, fetch_weights, load_densedepth, make_depth
from depthseg.layout import depth_files
from depthseg.testing import reference_nyu_h5, tiny_depth_anything


@pytest.fixture(scope='module')
def nyu(tmp_path_factory):
    path = tmp_path_factory.mktemp('weights')/'nyu.h5'
    model = reference_nyu_h5(path)
    x = np.random.default_rng(1).random((2, 64, 96, 3), np.float32)
    return path, x, model.predict(x, verbose=0)


def test_h5_is_a_keras2_file_with_slashed_names(nyu):
    import h5py
    with h5py.File(nyu[0]) as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f['model_weights'].attrs['layer_names']]
        assert 'conv1/conv' in names and 'depth_loss_function' in str(f.attrs['training_config'])


def test_loader_matches_keras2(nyu):
    path, x, want = nyu
    got = load_densedepth(path)(x).numpy()
    assert got.shape == want.shape == (2, 32, 48, 1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_loader_refuses_a_wrong_file(tmp_path):
    import h5py
    with h5py.File(tmp_path/'other.h5', 'w') as f:
        g = f.create_group('model_weights'); g.attrs['layer_names'] = [b'dense_1']
        g.create_group('dense_1').attrs['weight_names'] = [b'dense_1/kernel:0']; g['dense_1']['dense_1/kernel:0'] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="'dense_1' of the file has no place"): load_densedepth(tmp_path/'other.h5')
    (tmp_path/'junk.h5').write_bytes(b'junk')
    with pytest.raises(ValueError, match='not a Keras 2 HDF5'): load_densedepth(tmp_path/'junk.h5')


def test_weights_by_url_are_cached_and_checked(nyu, tmp_path):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(nyu[0].parent))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_port}/nyu.h5'
        got = fetch_weights(url, file_sha256(nyu[0]), cache=tmp_path)
        assert got == tmp_path/'nyu.h5' and got.read_bytes() == nyu[0].read_bytes()
        server.shutdown()
        assert fetch_weights(url, cache=tmp_path) == got  # cached: no server needed
        with pytest.raises(ValueError, match='SHA-256'): fetch_weights(url, '0' * 64, cache=tmp_path)
    finally: server.server_close()


def test_densedepth_stage_end_to_end(nyu, dataset):
    make_composites(dataset, CompositesJob(positions=1), backgrounds=1, foregrounds=2, progress=False)
    meta = make_depth(dataset, DepthSpec(weights=nyu[0], resolution='64x64', batch_size=2), progress=False)
    assert meta['backend'] == 'densedepth' and meta['weights_sha256'] == file_sha256(nyu[0])
    from PIL import Image
    for r in read_csv(dataset/'manifest.csv'):
        im = Image.open(dataset/depth_files(r['bg'], r['id'])[0]); assert (im.mode, im.size) == ('L', (224, 224))


def test_kill_and_resume_depth(dataset, tmp_path):
    make_composites(dataset, CompositesJob(positions=5), backgrounds=2, progress=False)
    tiny = tiny_depth_anything(tmp_path/'tiny.keras', size=112)
    clean = Path(shutil.copytree(dataset, tmp_path/'clean'))
    args = ['--backend', 'depth_anything', '--weights', str(tiny), '--batch-size', '4', '--full-precision']
    subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(clean), *args], check=True, capture_output=True)
    proc = subprocess.Popen([sys.executable, '-m', 'depthseg.cli', 'depth', str(dataset), *args], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if (dataset/'bgfg_depth').exists() and sum(1 for _ in (dataset/'bgfg_depth').rglob('*.png')) >= 8: break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL); proc.wait()
    n_rows = len(read_csv(dataset/'manifest.csv'))
    assert sum(1 for _ in (dataset/'bgfg_depth').rglob('*.png')) < n_rows, 'finished before it could be killed'
    subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(dataset), *args], check=True, capture_output=True)
    for folder in ('bgfg_depth', 'bgfg_depth16'):
        files = sorted(p.relative_to(dataset) for p in (dataset/folder).rglob('*.png'))
        assert len(files) == n_rows and not list((dataset/folder).rglob('.*.tmp'))
        assert all((dataset/f).read_bytes() == (clean/f).read_bytes() for f in files), folder
    assert (dataset/'depth.json').read_bytes() == (clean/'depth.json').read_bytes()
    assert (dataset/'stage_stats.json').read_bytes() == (clean/'stage_stats.json').read_bytes()  # the same statistics recorded
    assert (dataset/'depth_quality.csv').read_bytes() == (clean/'depth_quality.csv').read_bytes()  # the same quality figures
    assert not [p for p in dataset.rglob('.*') if p.is_file()]  # no temporary file, no lock left


def test_a_failed_write_is_not_swallowed(dataset, tmp_path, monkeypatch):
    import depthseg.store
    make_composites(dataset, CompositesJob(positions=2), backgrounds=2, progress=False)
    real, calls = depthseg.store.atomic_write, []
    def failing(path, data):
        calls.append(path)
        if len(calls) == 3: raise OSError(28, 'No space left on device', str(path))
        real(path, data)
    monkeypatch.setattr(depthseg.store, 'atomic_write', failing)
    with pytest.raises(OSError, match='No space left'):
        make_depth(dataset, DepthSpec('depth_anything', weights=tiny_depth_anything(tmp_path/'tiny.keras', size=112), batch_size=4), progress=False)


def test_a_local_preset_folder_labels_the_dataset_from_the_command_line(dataset, tmp_path):
    "A folder laid out as KerasHub publishes Depth Anything V2 presets, given to --preset: relative maps, the preset's files hashed."
    from depthseg.depth import preset_sha256
    from depthseg.testing import tiny_depth_anything_preset
    make_composites(dataset, CompositesJob(positions=1), backgrounds=3, progress=False)
    preset = tiny_depth_anything_preset(tmp_path/'preset', size=112)
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(dataset), '--backend', 'depth_anything', '--preset', str(preset)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    record = __import__('json').loads((dataset/'depth.json').read_text())
    assert record['kind'] == 'relative' and record['weights_sha256'] == preset_sha256(str(preset))
    assert record['labels']['kind'] == 'relative inverse depth' and len(list((dataset/'bgfg_depth').rglob('*.png'))) == 3 * 10 * 2


def test_the_demo_has_exact_depth_and_its_card_says_what_it_means(tmp_path):
    from depthseg.cli import demo
    demo(tmp_path/'demo', positions=1, progress=False)
    assert len(list((tmp_path/'demo'/'bgfg_depth').rglob('*.png'))) == 10 * 10 * 2
    card = (tmp_path/'demo'/'DATASET.md').read_text()
    for says in ('Kind: metric z-depth; units: metres', '0 means: at the camera', 'the maximum: 10 m or farther',
                 "Labeller: exact: the rendered depth of depthseg's sample scenes", "Licence of the labeller's weights: Apache-2.0"):
        assert says in card, says
