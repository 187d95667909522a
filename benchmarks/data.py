"""Examples per second that `depthseg.data.load` delivers to a training loop, per source, on this machine (not a test).

Normalised float32 batches (the default) and 8-bit batches for the model to scale on the device (`uint8=True`); the
machine's load average is printed with the figures (on a shared machine they are low and noisy).

    python benchmarks/data.py [--positions 4] [--batch-size 32] [--size 224]
"""
import argparse, os, shutil, tempfile, time
from pathlib import Path

from depthseg.cli import demo
from depthseg.composites import CompositesJob, make_composites
from depthseg.depth import DepthSpec, make_depth
from depthseg.data import load, to_tfrecord
from depthseg.layout import CARD, COMPOSITES, DEPTH, MANIFEST, MASKS
from depthseg.pack import pack
from depthseg.stats import write_card


def rate(ds, epochs=2):
    n, t = 0, None
    for epoch in range(epochs + 1):  # the first epoch warms up (tracing, file cache)
        if epoch == 1: t, n = time.perf_counter(), 0
        for batch in ds: n += int(batch['image'].shape[0])
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--positions', type=int, default=4)
    ap.add_argument('--batch-size', type=int, default=32)
    ap.add_argument('--size', type=int, default=224)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix='depthseg-data-bench-'))
    ds = root/'dataset'
    demo(ds, positions=args.positions, progress=False)  # the embedded sample photos, composites and card, as documented
    to_tfrecord(ds, root/'tfrecord', progress=False)
    pack(ds, root/'packed', progress=False)
    lean = shutil.copytree(ds, root/'lean', ignore=shutil.ignore_patterns(COMPOSITES, MASKS))
    sharded = shutil.copytree(ds, root/'sharded', ignore=shutil.ignore_patterns(COMPOSITES, MASKS, DEPTH, MANIFEST, '*.json', '*.md', 'depth_quality.csv', CARD))
    make_composites(sharded, CompositesJob(positions=args.positions, shards=True), progress=False)  # the same dataset, straight into shards
    make_depth(sharded, DepthSpec('exact'), progress=False); write_card(sharded, progress=False)
    kw = dict(split='all', batch_size=args.batch_size, size=(args.size, args.size), depth=False, shuffle=True)
    rows = [('folder', rate(load(ds, **kw))), ('tar shards, in place', rate(load(root/'packed', source='shards', **kw))),
            ('folder, uint8', rate(load(ds, uint8=True, **kw))),
            ('tar shards, uint8', rate(load(root/'packed', source='shards', uint8=True, **kw))),
            ('composites in shards', rate(load(sharded, **kw))), ('composites in shards, uint8', rate(load(sharded, uint8=True, **kw))),
            ('tfrecord', rate(load(root/'tfrecord', source='tfrecord', **kw))),
            ('on the fly (manifest layout)', rate(load(lean, source='on_the_fly', **kw)))]
    print(f'\nload(): batches of {args.batch_size} at {args.size}x{args.size}, bg + image + mask, demo with {args.positions} positions')
    print('load average {:.1f}, {:.1f}, {:.1f} (1, 5, 15 min) on {} cores'.format(*os.getloadavg(), os.cpu_count()))
    for name, r in rows: print(f'  {name:30s} {r:8.0f} examples/s')
    shutil.rmtree(root)


if __name__ == '__main__': main()
