"""The Beam pipeline against the single-machine stages on the same inputs, in one run (not a test).

Prints composites/s for `make_composites` (all cores) and for `make_beam` on the DirectRunner (composites only, all cores
as processes), then images/s for depth: `make_depth` and `make_beam` with DenseDepth (random weights saved as nyu.h5 was)
on composites already made, so the pipeline's cost over the stages it is built from shows.

    python benchmarks/beam.py [--sources 20] [--positions 10] [--depth-images 96] [--resolution 224x224] [--batch-size 8]
"""
import argparse, os, shutil, tempfile, time
from pathlib import Path

from composites import make_sources  # benchmarks/composites.py: procedural sources, prepared by the first two stages

from depthseg.beam import make_beam
from depthseg.composites import CompositesJob, make_composites
from depthseg.depth import DepthSpec, make_depth
from depthseg.layout import BG, FG, FG_MASK, sources_table
from depthseg.testing import reference_nyu_h5  # a Keras 2 nyu.h5 with random weights

DIRECT = ['--runner=DirectRunner', f'--direct_num_workers={os.cpu_count()}', '--direct_running_mode=multi_processing']


def timed(fn, *args, **kwargs):
    t = time.perf_counter(); fn(*args, **kwargs); return time.perf_counter() - t


def copy_sources(ds, to):
    "A new dataset folder `to` holding the prepared sources of `ds` (what the first two stages wrote), nothing else."
    for folder in (BG, FG, FG_MASK): shutil.copytree(ds/folder, to/folder)
    for table in (sources_table(BG), sources_table(FG)): shutil.copyfile(ds/table, to/table)
    return to


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sources', type=int, default=20, help='backgrounds and foregrounds each')
    ap.add_argument('--positions', type=int, default=10, help='placements per pair, and as many mirrored')
    ap.add_argument('--depth-images', type=int, default=96, help='composites labelled in the depth comparison')
    ap.add_argument('--resolution', default='224x224', help='DenseDepth inference size HxW (the reference: 480x640)')
    ap.add_argument('--batch-size', type=int, default=8)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix='depthseg-beam-bench-'))
    ds = make_sources(root, args.sources)
    job = CompositesJob(positions=args.positions)
    total = args.sources ** 2 * job.per_pair
    single = timed(make_composites, copy_sources(ds, root/'single'), job, progress=False)
    beam = timed(make_beam, copy_sources(ds, root/'beam'), DIRECT, job, progress=False)

    reference_nyu_h5(root/'nyu.h5')
    fgs = max(1, args.depth_images // job.per_pair)  # one background, enough foregrounds
    small = dict(backgrounds=1, foregrounds=fgs)
    spec = DepthSpec(weights=root/'nyu.h5', resolution=args.resolution, batch_size=args.batch_size)
    d_single, d_beam = copy_sources(ds, root/'d_single'), copy_sources(ds, root/'d_beam')
    make_composites(d_single, job, **small, progress=False); make_composites(d_beam, job, **small, progress=False)
    n = fgs * job.per_pair
    t_single = timed(make_depth, d_single, spec, progress=False)
    t_beam = timed(make_beam, d_beam, ['--runner=DirectRunner'], job, spec, **small, progress=False)

    print(f'\non {os.cpu_count()} cores, 224x224 composites + masks, {args.sources} x {args.sources} x 2 x {args.positions} = {total:,}')
    print(f'  make_composites (processes)           {total / single:8,.0f} composites/s   {single:6.1f} s')
    print(f'  make_beam, DirectRunner, composites   {total / beam:8,.0f} composites/s   {beam:6.1f} s   ({beam / single:.1f}x the time)')
    print(f'depth, DenseDepth at {args.resolution}, batch {args.batch_size}, {n} composites already made (times include loading the model)')
    print(f'  make_depth                            {n / t_single:8.2f} images/s       {t_single:6.1f} s')
    print(f'  make_beam, DirectRunner, label_batch  {n / t_beam:8.2f} images/s       {t_beam:6.1f} s   ({t_beam / t_single:.1f}x the time)')

    shutil.rmtree(root)  # the temporary folder this run made

if __name__ == '__main__': main()
