"Beam pipeline: the DirectRunner's output equals the single-machine stages'; a rerun does only what is missing; the core install stays free of Beam."
import contextlib, importlib.metadata, io, json, subprocess, sys

import numpy as np
import pytest
from PIL import Image

from depthseg.beam import make_beam
from depthseg.cli import main
from depthseg.composites import CompositesJob, make_composites
from depthseg.core import read_csv
from depthseg.depth import DepthSpec, make_depth
from depthseg.layout import depth_files
from depthseg.pixels import stage_stats
from depthseg.stats import write_card
from depthseg.store import open_store
from depthseg.testing import reference_nyu_h5, tiny_depth_anything

SIZE = ['--positions', '2', '--backgrounds', '2', '--foregrounds', '3']


def depth_maps(ds, r):
    return [np.asarray(Image.open(ds/p), np.int32) for p in depth_files(r['bg'], r['id'])]


def test_directrunner_equals_single_machine(sources, tmp_path):
    import shutil
    nyu = tmp_path/'nyu.h5'
    reference_nyu_h5(nyu)  # DenseDepth as nyu.h5 was saved, random weights, through the real loader
    single, beam = (shutil.copytree(sources, tmp_path/name) for name in ('single', 'beam'))
    job, depth = CompositesJob(positions=2), DepthSpec(weights=nyu, resolution='64x64', batch_size=4, full_precision=True)
    make_composites(single, job, backgrounds=2, foregrounds=3, progress=False)
    make_depth(single, depth, progress=False)
    write_card(single, recompute=False, progress=False)

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(['beam', str(beam), *SIZE, '--weights', str(nyu), '--resolution', '64x64', '--batch-size', '4',
                     '--full-precision', '--', '--runner=DirectRunner', '--direct_num_workers=2',
                     '--direct_running_mode=multi_threading'])
    assert code == 0, out.getvalue()
    assert 'beam: 24 composites' in out.getvalue()

    rows = read_csv(beam/'manifest.csv')
    assert len(rows) == 2 * 3 * 2 * 2
    for name in ('manifest.csv', 'composites.json', 'depth.json'):
        assert (beam/name).read_bytes() == (single/name).read_bytes(), name
    worst = [0, 0]
    for r in rows:
        for key in ('image', 'mask'): assert (beam/r[key]).read_bytes() == (single/r[key]).read_bytes(), r[key]
        for i, (a, b) in enumerate(zip(depth_maps(beam, r), depth_maps(single, r))): worst[i] = max(worst[i], np.abs(a - b).max())
    assert worst[0] <= 1 and worst[1] <= 256, worst  # batches differ: float rounding, one level of 8 bits at most

    got, want = stage_stats(beam), stage_stats(single)
    assert set(got) == set(want) == {'bgfg', 'bgfg_mask', 'bgfg_depth'}
    for name in ('bgfg', 'bgfg_mask'): assert got[name].to_json() == want[name].to_json(), name
    assert got['bgfg_depth'].images == want['bgfg_depth'].images == len(rows)
    assert np.abs(got['bgfg_depth'].hist - want['bgfg_depth'].hist).sum() <= 0.001 * want['bgfg_depth'].hist.sum()
    card, card_single = (json.loads((d/'dataset.json').read_text()) for d in (beam, single))
    assert card['composites'] == card_single['composites'] and card['depth'] == card_single['depth']
    for name, s in card_single['sets'].items():
        if name != 'bgfg_depth': assert card['sets'][name] == s, name
    assert (beam/'card/samples.png').exists() and (beam/'DATASET.md').exists()

    # an interrupted run: some maps and a composite lost; a rerun makes exactly those again
    files = [p for p in beam.rglob('*') if p.is_file() and p.parts[-3] in ('bgfg', 'bgfg_mask', 'bgfg_depth', 'bgfg_depth16')]
    before = {p: p.read_bytes() for p in files}
    for r in rows[3:6]: (beam/depth_files(r['bg'], r['id'])[0]).unlink()
    (beam/rows[7]['image']).unlink()
    report = make_beam(beam, job=job, depth=depth, backgrounds=2, foregrounds=3, progress=False)
    assert (report.composites, report.maps) == (1, 3)
    redone = {beam/depth_files(r['bg'], r['id'])[0] for r in rows[3:6]}
    assert {p: p.read_bytes() for p in files if p not in redone} == {p: d for p, d in before.items() if p not in redone}
    for p in redone:  # batches may differ from the first run's: within one level
        assert np.abs(np.asarray(Image.open(p), np.int32) - np.asarray(Image.open(io.BytesIO(before[p])), np.int32)).max() <= 1
    assert stage_stats(beam)['bgfg'].to_json() == want['bgfg'].to_json()


def test_core_install_does_not_pull_beam(sources, tmp_path):
    core = [r for r in importlib.metadata.requires('depthseg') if 'extra ==' not in r]
    assert core and not any('beam' in r for r in core), core
    assert any(r.startswith('apache-beam') and 'extra == "beam"' in r for r in importlib.metadata.requires('depthseg'))
    # without Beam (blocked from import), the library and the CLI work and `depthseg beam` says how to get it
    script = ("import sys; sys.modules['apache_beam'] = None\n"
              "import depthseg.cli, depthseg.beam, depthseg.composites, depthseg.depth, depthseg.data\n"
              f"sys.exit(depthseg.cli.main(['beam', {str(sources)!r}, '--positions', '1']))")
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert proc.returncode == 1 and 'pip install "depthseg[beam]"' in proc.stderr, proc.stderr[-2000:]
    assert not (sources/'composites.json').exists()


class Bucket:
    "A stand-in for cloud storage, as Beam sees it: `testbucket://PATH` objects kept under a local folder, no directories, each object written whole on close."
    root = None

    @classmethod
    def filesystem(cls):
        from apache_beam.io.filesystem import FileMetadata, FileSystem

        class BucketFileSystem(FileSystem):
            @classmethod
            def scheme(cls_): return 'testbucket'
            def _file(self, url): return cls.root/url[len('testbucket://'):]
            def join(self, base, *parts): return '/'.join([base.rstrip('/')] + [p.strip('/') for p in parts])
            def split(self, url): head, _, tail = url.rpartition('/'); return head, tail
            def mkdirs(self, url): pass
            def has_dirs(self): return False
            def _list(self, prefix):
                for p in sorted(cls.root.rglob('*')):
                    url = 'testbucket://' + p.relative_to(cls.root).as_posix()
                    if p.is_file() and url.startswith(prefix): yield FileMetadata(url, p.stat().st_size)
            def create(self, url, mime_type=None, compression_type=None):
                target = self._file(url)
                class Upload(io.BytesIO):
                    def close(self):
                        if not self.closed: target.parent.mkdir(parents=True, exist_ok=True); target.write_bytes(self.getvalue())
                        super().close()
                return Upload()
            def open(self, url, mime_type=None, compression_type=None): return open(self._file(url), 'rb')
            def exists(self, url): return self._file(url).is_file()
            def size(self, url): return self._file(url).stat().st_size
            def metadata(self, url): return FileMetadata(url, self.size(url))
            def last_updated(self, url): return self._file(url).stat().st_mtime
            def checksum(self, url): return str(self.size(url))
            def delete(self, urls): [self._file(u).unlink() for u in urls]
            def copy(self, src, dst): raise NotImplementedError
            def rename(self, src, dst): raise NotImplementedError
        return BucketFileSystem


def test_a_bucket_dataset(sources, tmp_path):
    "A dataset on (a stand-in for) cloud storage: same files as a local run, records read back, the rerun lists and skips."
    import shutil
    Bucket.root = tmp_path/'bucket'
    filesystem = Bucket.filesystem()  # Beam finds it among the subclasses of FileSystem while it lives
    shutil.copytree(sources, Bucket.root/'ds')
    local = shutil.copytree(sources, tmp_path/'local')
    args = dict(job=CompositesJob(positions=1), backgrounds=2, foregrounds=2,
                depth=DepthSpec('depth_anything', weights=tiny_depth_anything(tmp_path/'tiny.keras', size=112), batch_size=4))
    make_beam(local, progress=False, **args)
    out = io.StringIO()
    with contextlib.redirect_stdout(out): report = make_beam('testbucket://ds', **args)
    assert 'card: not written' in out.getvalue() and report.total == report.composites == report.maps == 8
    remote = Bucket.root/'ds'
    for name in ('manifest.csv', 'composites.json', 'depth.json'): assert (remote/name).read_bytes() == (local/name).read_bytes(), name
    for r in read_csv(local/'manifest.csv'):
        for key in ('image', 'mask'): assert (remote/r[key]).read_bytes() == (local/r[key]).read_bytes()
        assert (remote/depth_files(r['bg'], r['id'])[0]).exists()
    assert stage_stats(remote)['bgfg'].to_json() == stage_stats(local)['bgfg'].to_json()
    again = make_beam('testbucket://ds', progress=False, **args)
    assert (again.composites, again.maps) == (0, 0)
    with pytest.raises(OSError):  # an upload that fails midway is never completed: no partial object
        with open_store('testbucket://ds').open_write('partial.csv', text=True) as f: f.write('id\n'); raise OSError('connection lost')
    assert not (remote/'partial.csv').exists()
