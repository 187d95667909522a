"""Composites throughput on this machine, in one run on the same inputs (not a test).

Prints, for 224x224 composites with their masks:
- end to end: `make_composites` on all cores, files written (composites + masks per second);
- end to end straight into shards (`--shards`: one tar per background);
- the machine's limit: the same compose + encode in memory on all cores, nothing written;
- their ratio;
- a naive one-process loop (open background, paste, save, per image), the baseline a user would write.

    python benchmarks/composites.py [--sources 99] [--positions 20] [--sample 20000]
"""
import argparse, shutil, os, tempfile, time
from dataclasses import replace
from functools import partial
from pathlib import Path

from PIL import Image, ImageOps

from depthseg.backgrounds import prepare_backgrounds
from depthseg.composites import CompositesJob, CompositesPlan, compose, encode, make_composites, placements, read_sources
from depthseg.core import parallel_map
from depthseg.foregrounds import prepare_foregrounds
from depthseg.layout import BG, COMPOSITES, FG, FG_MASK, MASKS, SHARDS, bg_file, fg_files, sources_table
from depthseg.store import open_store
from depthseg.testing import draw_sources


def make_sources(root, n):
    "n procedural backgrounds and n foregrounds (one in ten a dog), prepared by the first two stages; the dataset folder."
    rooms, cutouts = draw_sources(root, n)
    ds = Path(root)/'dataset'
    prepare_backgrounds(rooms, ds, progress=False); prepare_foregrounds(cutouts, ds, progress=False)
    return ds


def pairs_of(ds, job):
    "The placements of every foreground on every background of `ds`, one list per pair, in manifest order."
    store = open_store(ds)
    plan = CompositesPlan(job, read_sources(store, 'bg'), read_sources(store, 'fg'))
    return [placements(*pair, job) for pair in plan.pairs()]


def _in_memory(ds, ps):
    "Compose and encode one pair's composites, write nothing: the work the stage cannot avoid."
    fg_file, mask_file = fg_files(ps[0].fg)
    bg = Image.open(ds/bg_file(ps[0].bg)).convert('RGB')
    fg, mask = Image.open(ds/fg_file).convert('RGBA'), Image.open(ds/mask_file).convert('L')
    return sum(len(a) + len(b) for a, b in (encode(*compose(bg, fg, mask, p)) for p in ps))


def naive(ds, ps_list, out):
    "One process, every composite on its own: open the files, paste, save."
    out.mkdir()
    for ps in ps_list:
        for p in ps:
            bg = Image.open(ds/bg_file(p.bg)).convert('RGB')
            fg = Image.open(ds/fg_files(p.fg)[0]).convert('RGBA')
            if p.flip: fg = ImageOps.mirror(fg)
            bg.paste(fg, (p.x, p.y), fg); bg.save(out/f'{p.id}.jpg', quality=95)
            m = Image.new('L', bg.size); m.paste(fg.getchannel('A').point(lambda v: 255 if v > 127 else 0), (p.x, p.y))
            m.save(out/f'{p.id}.png')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--sources', type=int, default=99, help='backgrounds and foregrounds each (reference: 99)')
    ap.add_argument('--positions', type=int, default=20, help='placements per pair, and as many mirrored (reference: 20)')
    ap.add_argument('--sample', type=int, default=20_000, help='composites timed for the limit and the naive loop')
    ap.add_argument('--workdir', default=None, help='where to build (default: a temporary folder)')
    args = ap.parse_args()
    root = Path(args.workdir or tempfile.mkdtemp(prefix='depthseg-bench-'))
    ds = make_sources(root, args.sources)
    job = CompositesJob(positions=args.positions)
    pairs = pairs_of(ds, job)
    total = sum(map(len, pairs))
    sample = pairs[::max(1, len(pairs) * job.per_pair // args.sample)]
    n_sample = sum(map(len, sample))

    t = time.perf_counter(); list(parallel_map(partial(_in_memory, ds), sample, desc='limit', unit='pair'))
    limit = n_sample / (time.perf_counter() - t)
    t = time.perf_counter(); naive(ds, sample[:max(1, len(sample) // 10)], root/'naive')
    naive_rate = sum(map(len, sample[:max(1, len(sample) // 10)])) / (time.perf_counter() - t)
    sharded = root/'sharded'
    for f in (BG, FG, FG_MASK, sources_table(BG), sources_table(FG)): (shutil.copytree if (ds/f).is_dir() else shutil.copy)(ds/f, sharded/f)
    t = time.perf_counter(); make_composites(sharded, replace(job, shards=True))
    in_shards = total / (time.perf_counter() - t)
    shard_size = sum(p.stat().st_size for p in (sharded/SHARDS).iterdir())
    t = time.perf_counter(); make_composites(ds, job)
    elapsed = time.perf_counter() - t
    e2e = total / elapsed
    size = sum(p.stat().st_size for f in (COMPOSITES, MASKS) for p in (ds/f).rglob('*.*'))
    print(f'\ncomposites of 224x224 + masks, {args.sources} backgrounds x {args.sources} foregrounds x 2 x {args.positions}'
          f' = {total:,}, on {os.cpu_count()} cores')
    print(f'  end to end (make_composites, files written) {e2e:8,.0f} composites/s   {elapsed:6.1f} s for {total:,}, {size / 2**30:.2f} GiB')
    print(f'  end to end straight into shards (--shards)   {in_shards:8,.0f} composites/s   {total / in_shards:6.1f} s, {shard_size / 2**30:.2f} GiB in {args.sources} shards')
    print(f'  machine limit (compose + encode in memory)  {limit:8,.0f} composites/s   on {n_sample:,}')
    print(f'  ratio end to end / limit                     {e2e / limit:8.0%}   files')
    print(f'                                               {in_shards / limit:8.0%}   shards')
    print(f'  naive one-process loop                       {naive_rate:8,.0f} composites/s   ({e2e / naive_rate:.1f}x slower than end to end)')

    if not args.workdir: shutil.rmtree(root)  # the temporary folder this run made

if __name__ == '__main__': main()
