"""Floor composites and layered depth at the reference size on this machine, end to end (not a test).

The reference: 99 backgrounds x 99 foregrounds x 2 x 20 = 392,040 composites, each with its mask and its depth map.
Layered depth needs one depth map per background (here the rooms' rendered depth, as the `exact` backend gives; with
photos, one model run each: time yours with `depthseg geometry`), then no model at all per composite.

Prints, with the machine's CPU count and load (other programs share the cores):
- geometry: depth and fitted floor of all backgrounds, written (backgrounds/s);
- composites: `make_composites(placement='floor', occlusion=True)` on the first B x F pairs, files written (composites/s);
- layered depth: `make_depth(DepthSpec('layered'))` on them, 8-bit maps written (maps/s);
- the time for all 392,040, composites included, projected from those rates (or measured, with --full);
- the loader: examples/s reading the files (`source='folder'`) beside making them on the fly from the sources,
  geometry and manifest alone (`source='on_the_fly'`: composite, mask and layered depth in memory), and `endless`
  (from the sources and their geometry alone, new places each epoch).

    python benchmarks/layered.py [--sources 99] [--positions 20] [--backgrounds 10] [--foregrounds 10] [--full] [--shards]
"""
import argparse, os, resource, shutil, tempfile, time
from pathlib import Path

from depthseg.backgrounds import prepare_backgrounds
from depthseg.composites import CompositesJob, make_composites, read_sources
from depthseg.data import endless, load
from depthseg.depth import DepthSpec, make_depth
from depthseg.floor import fit_floor
from depthseg.foregrounds import prepare_foregrounds
from depthseg.geometry import write_geometry, write_heights
from depthseg.layout import BG_DEPTH, BG_FLOOR
from depthseg.samples import draw_dog, draw_person, draw_room, room_depth
from depthseg.store import check_record, open_store


def make_sources(root, n):
    "n rooms rendered at 224x224 (with their true depth) and n cut-outs (one in ten a dog), prepared; the dataset folder and the depths."
    rooms, cutouts, ds = Path(root)/'rooms', Path(root)/'cutouts', Path(root)/'dataset'
    for folder in (rooms, cutouts): folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        draw_room(i, (224, 224)).save(rooms/f'room_{i:03d}.jpg', quality=95)
        (draw_dog(i) if i % 10 == 9 else draw_person(i)).save(cutouts/f'{"dog" if i % 10 == 9 else "person"}_{i:03d}.png')
    prepare_backgrounds(rooms, ds, progress=False); prepare_foregrounds(cutouts, ds, progress=False)
    return ds


def make_geometry_of_rooms(ds, n):
    "Each room's true depth (what one metric model run per background gives) and its floor fitted to it; seconds taken."
    store = open_store(ds)
    t = time.perf_counter()
    check_record(store, 'geometry', dict(backend='rendered', floor='fit', floor_tol=0.03))
    write_heights(store)
    for folder in (BG_DEPTH, BG_FLOOR): store.makedirs(folder)
    for i, bg in enumerate(read_sources(store, 'bg')):
        depth = room_depth(i, (224, 224))
        write_geometry(store, bg, depth, fit_floor(depth))
    return time.perf_counter() - t


def timed(fn, *args, **kw):
    "Seconds `fn` took, wall and CPU (this process and its workers)."
    cpu = lambda: sum(getattr(resource.getrusage(w), k) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for k in ('ru_utime', 'ru_stime'))
    t, c = time.perf_counter(), cpu()
    fn(*args, **kw)
    return time.perf_counter() - t, cpu() - c


def loader_rate(batches, n):
    "Examples/s of the dataset `batches` over about `n` examples, after one batch to warm up."
    batches = iter(batches)
    next(batches)
    t, seen = time.perf_counter(), 0
    while seen < n: seen += len(next(batches)['id'])
    return seen / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sources', type=int, default=99, help='backgrounds and foregrounds each (reference: 99)')
    ap.add_argument('--positions', type=int, default=20, help='placements per pair, and as many mirrored (reference: 20)')
    ap.add_argument('--backgrounds', type=int, default=10, help='backgrounds timed end to end (the rest projected)')
    ap.add_argument('--foregrounds', type=int, default=10, help='foregrounds timed end to end')
    ap.add_argument('--full', action='store_true', help='time all of them, not a part')
    ap.add_argument('--workers', type=int, default=None, help='worker processes (default: all cores)')
    ap.add_argument('--loader', type=int, default=2000, help='examples the loader is timed on')
    ap.add_argument('--workdir', default=None, help='where to build (default: a temporary folder)')
    ap.add_argument('--shards', action='store_true', help='composites and maps straight into a tar shard per background (`--shards`), not files')
    args = ap.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix='depthseg-layered-'))
    load0 = os.getloadavg()
    ds = make_sources(root, args.sources)
    t_geometry = make_geometry_of_rooms(ds, args.sources)
    b, f = (args.sources, args.sources) if args.full else (args.backgrounds, args.foregrounds)
    job = CompositesJob(positions=args.positions, placement='floor', occlusion=True, shards=args.shards)
    n, total = b * f * job.per_pair, args.sources ** 2 * job.per_pair
    t_comp, c_comp = timed(make_composites, ds, job, backgrounds=b, foregrounds=f, workers=args.workers, progress=False)
    warm = min(32, n // 4)
    make_depth(ds, DepthSpec('layered', compare=0), limit=warm, progress=False)  # TensorFlow imported (the stage decodes JPEG with it), a few maps made
    t_depth, c_depth = timed(make_depth, ds, DepthSpec('layered', compare=0), progress=False)  # the rooms' depth is rendered: no model to check against
    t_depth, c_depth = t_depth * n / (n - warm), c_depth * n / (n - warm)  # as if it had made all n
    lean = root/'lean'  # the dataset as it could ship: sources, geometry and manifest, no composites, masks or depth maps
    shutil.copytree(ds, lean, ignore=shutil.ignore_patterns('bgfg', 'bgfg_mask', 'bgfg_depth', 'shards'))
    kw = dict(split='all', batch_size=32, normalize=False, shuffle=False)
    reading, flying = (loader_rate(load(path, source=source, **kw).repeat(), args.loader) for path, source in ((ds, 'folder'), (lean, 'on_the_fly')))
    forever = loader_rate(endless(lean, job, split='all'), args.loader)
    load1 = os.getloadavg()
    size = sum(p.stat().st_size for p in ds.rglob('*.*') if p.parts[-3] in ('bgfg', 'bgfg_mask', 'bgfg_depth') or p.parts[-2] == 'shards')
    projected = t_geometry + total * (t_comp + t_depth) / n
    print(f'\nfloor composites + layered depth, 224x224, {args.sources} backgrounds x {args.sources} foregrounds x 2 x {args.positions}'
          f' = {total:,}; timed on {b} x {f} x 2 x {args.positions} = {n:,}; {os.cpu_count()} cores')
    print(f'  load average before / after (1, 5, 15 min): {" ".join(f"{v:.1f}" for v in load0)} / {" ".join(f"{v:.1f}" for v in load1)}')
    print(f'  geometry of {args.sources} backgrounds (depth + fitted floor, written) {args.sources / t_geometry:8,.1f} backgrounds/s   {t_geometry:7.1f} s')
    print(f'  composites (floor, occlusion; {"into shards" if args.shards else "files written"})  {n / t_comp:8,.0f} composites/s   {t_comp:7.1f} s, {c_comp / t_comp:.2f} cores busy')
    print(f'  layered depth maps (8-bit PNG written)             {n / t_depth:8,.0f} maps/s         {t_depth:7.1f} s, {c_depth / t_depth:.2f} cores busy')
    print(f'  {size / n / 1024:.1f} KiB per composite + mask + depth map written; CPU per item: {c_comp / n * 1000:.1f} ms composite, {c_depth / n * 1000:.1f} ms layered map')
    print(f'  on {os.cpu_count()} idle cores (CPU time / cores): about {(t_geometry + total * (c_comp + c_depth) / n / os.cpu_count()) / 60:.1f} min for all {total:,}')
    print(f'  {"measured" if args.full else "projected"} for all {total:,}: {projected / 60:.1f} min end to end '
          f'({total * t_comp / n / 60:.1f} min composites, {total * t_depth / n / 60:.1f} min layered depth, {t_geometry / 60:.1f} min geometry); goal: under 5 min')
    print(f'  loader, {args.loader:,} examples (image, mask, depth; batches of 32): reading the dataset {reading:6,.0f} examples/s, '
          f'on the fly {flying:6,.0f} examples/s, endless {forever:6,.0f} examples/s')

    if not args.workdir: shutil.rmtree(root)  # the temporary folder this run made

if __name__ == '__main__': main()
