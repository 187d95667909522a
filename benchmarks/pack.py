"""Pack, push and pull speed against a plain `cp -r` of the dataset folder, on this machine (not a test).

    python benchmarks/pack.py DATASET [--shard-size 1000000000] [--workdir DIR]
"""
import argparse, subprocess, tempfile, time
from pathlib import Path

from depthseg.pack import pack, pull, push


def timed(fn):
    t = time.perf_counter(); fn(); return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('dataset')
    ap.add_argument('--shard-size', type=int, default=1_000_000_000)
    ap.add_argument('--workdir', default=None)
    args = ap.parse_args()
    ds, work = Path(args.dataset), Path(args.workdir or tempfile.mkdtemp(prefix='depthseg-pack-bench-'))
    work.mkdir(parents=True, exist_ok=True)
    files = [p for p in ds.rglob('*') if p.is_file()]
    mb = sum(p.stat().st_size for p in files) / 1e6
    subprocess.run(['sync'])
    rows = [('cp -r (folder of small files)', timed(lambda: subprocess.run(['cp', '-r', str(ds), str(work/'copy')], check=True))),
            ('pack (folder -> shards)', timed(lambda: pack(ds, work/'shards', args.shard_size, progress=False))),
            ('push (shards -> folder, checked)', timed(lambda: push(work/'shards', work/'drive', progress=False))),
            ('pull (check + parallel extract)', timed(lambda: pull(work/'drive', work/'local', progress=False)))]
    print(f'\n{len(files):,} files, {mb:,.0f} MB; shards of {args.shard_size / 1e6:,.0f} MB')
    for name, s in rows: print(f'  {name:34s} {s:7.1f} s  {mb / s:8.1f} MB/s')
    print(f'(outputs left in {work}: deleting a large tree right before a run slows this disk, so delete them later)')


if __name__ == '__main__': main()
