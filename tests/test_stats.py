"Statistics and card end to end: every set equals NumPy on all its images at once; the card matches the files."
import json, shutil, subprocess, sys

import numpy as np
from PIL import Image

from depthseg.composites import CompositesJob, make_composites
from depthseg.stats import dataset_stats, normalization


def test_every_set_equals_numpy(dataset):
    make_composites(dataset, CompositesJob(positions=2), backgrounds=5, progress=False)
    for src in (dataset/'bgfg_mask').iterdir():  # stand-in depth maps: one-channel PNGs where depth maps go
        shutil.copytree(src, dataset/'bgfg_depth'/src.name)
    stats = dataset_stats(dataset, workers=2, progress=False)
    sets = {'bg': 'bg/*.jpg', 'fg_mask': 'fg_mask/*.png', 'bgfg': 'bgfg/*/*.jpg', 'bgfg_mask': 'bgfg_mask/*/*.png',
            'bgfg_depth': 'bgfg_depth/*/*.png'}
    for name, pattern in sets.items():
        arrays = [np.asarray(Image.open(p)) for p in sorted(dataset.glob(pattern))]
        pixels = np.concatenate([a.reshape(-1, 1 if a.ndim == 2 else a.shape[2]) for a in arrays]) / 255
        np.testing.assert_allclose(stats[name].mean, pixels.mean(0), atol=1e-6, err_msg=name)
        np.testing.assert_allclose(stats[name].std, pixels.std(0), atol=1e-6, err_msg=name)
        assert stats[name].images == len(arrays)
        assert stats[name].nbytes == sum(p.stat().st_size for p in dataset.glob(pattern))
    fg = [np.asarray(Image.open(p)) for p in sorted(dataset.glob('fg/*.png'))]
    opaque = np.concatenate([a[a[..., 3] == 255][:, :3] for a in fg]) / 255
    np.testing.assert_allclose(stats['fg'].mean, opaque.mean(0), atol=1e-6)
    np.testing.assert_allclose(stats['fg'].std, opaque.std(0), atol=1e-6)


def test_stats_command_writes_the_card(dataset):
    make_composites(dataset, CompositesJob(positions=1), progress=False)
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'stats', str(dataset)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    card = json.loads((dataset/'dataset.json').read_text())
    assert card['sets']['bgfg']['images'] == len(list(dataset.glob('bgfg/*/*.jpg'))) == 10 * 10 * 2
    assert card['sets']['bgfg']['dimensions'] == {'224x224x3': 200}
    assert card['composites']['seed'] == 0 and card['versions']['depthseg']
    md = (dataset/'DATASET.md').read_text()
    assert '## Composites (bgfg)' in md and 'Number of images: 200' in md
    for pic in ('samples', 'histograms', 'placements'):
        with Image.open(dataset/f'card/{pic}.png') as im: assert im.format == 'PNG' and im.width > 100
    mean, std = normalization(dataset, 'bgfg')
    assert mean == card['sets']['bgfg']['mean'] and std == card['sets']['bgfg']['std']


def test_stages_count_what_the_files_hold(dataset, tmp_path):
    from depthseg.depth import DepthSpec, make_depth
    from depthseg.pixels import stage_stats
    from depthseg.stats import write_card
    from depthseg.testing import tiny_depth_anything
    make_composites(dataset, CompositesJob(positions=2), backgrounds=3, progress=False)
    assert set(stage_stats(dataset)) == {'bgfg_mask'}
    make_depth(dataset, DepthSpec('depth_anything', weights=tiny_depth_anything(tmp_path/'tiny.keras', size=112), batch_size=16), progress=False)
    recorded = stage_stats(dataset)
    assert set(recorded) == {'bgfg', 'bgfg_mask', 'bgfg_depth'}
    counted = dataset_stats(dataset, workers=2, progress=False)
    for name, st in recorded.items(): assert st.to_json() == counted[name].to_json(), name  # exactly, bytes and shapes too
    assert write_card(dataset, recompute=False, progress=False) == write_card(dataset, progress=False)
