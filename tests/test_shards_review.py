"Review of composites in shards: headers a tar reader would take otherwise, examples WebDataset would split, a shards folder that is a link."
import io, os, shutil, subprocess, sys, tarfile
from pathlib import Path

import pytest

from depthseg.composites import CompositesJob, make_composites
from depthseg.core import BadInput
from depthseg.layout import SHARDS
from depthseg.store import _ustar_header, shard_index, write_tar

JPG, JSON = 'bg_000_fg_000_orig_00.jpg', 'bg_000_fg_000_orig_00.json'


def _with_size(name: str, field: bytes) -> bytes:
    "The header of member `name` with size field `field`, its checksum made right."
    h = bytearray(_ustar_header(name, 0)); h[124:136] = field.ljust(11)[:11] + b'\0'
    h[148:156] = b' ' * 8; h[148:155] = b'%06o\0' % sum(h)
    return bytes(h)


@pytest.mark.parametrize('field', [b'-1', b'-2000', b'1_0', b'+12'])
def test_a_size_not_in_octal_digits_is_refused(field):
    "int(..., 8) takes a sign and underscores: a size of -1 read the rest of the shard as the member."
    shard = _with_size(JPG, field) + bytes(2048)
    with pytest.raises(BadInput, match='corrupt header'): shard_index(io.BytesIO(shard), 'x.tar', 'bg_000')


def test_an_example_apart_is_refused():
    "WebDataset makes an example of each run of members with one key: one split in two is two examples with missing parts."
    b = io.BytesIO(); write_tar(b, [(JPG, b'j'), ('bg_000_fg_000_orig_01.jpg', b'j'), (JSON, b'{}')])
    with pytest.raises(BadInput, match=f"'{JSON}' lies apart from the other files of its example"): shard_index(b, 'x.tar', 'bg_000')
    b = io.BytesIO(); write_tar(b, [(JPG, b'j'), (JSON, b'{}'), ('bg_000_fg_000_orig_01.jpg', b'j')])
    assert list(shard_index(b, 'x.tar', 'bg_000')) == [JPG, JSON, 'bg_000_fg_000_orig_01.jpg']


def test_a_linked_shards_folder_is_not_written(sources, tmp_path):
    "The depth stage wrote its maps into the shards of a `shards/` that was a link out of the dataset."
    ds = Path(shutil.copytree(sources, tmp_path/'ds'))
    make_composites(ds, CompositesJob(positions=1, shards=True), backgrounds=1, foregrounds=2, workers=1, progress=False)
    outside = tmp_path/'outside'; outside.mkdir(); (ds/SHARDS).rename(outside/SHARDS); (ds/SHARDS).symlink_to(outside/SHARDS)
    before = (outside/SHARDS/'bg_000.tar').read_bytes(); (outside/SHARDS/'.theirs.tmp').write_bytes(b'not ours to remove')
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(ds), '--backend', 'exact', '--workers', '1'], capture_output=True, text=True)
    assert r.returncode != 0 and f'{ds/SHARDS}: a link' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert (outside/SHARDS/'bg_000.tar').read_bytes() == before and sorted(p.name for p in (outside/SHARDS).iterdir()) == ['.theirs.tmp', 'bg_000.tar']


def _tar(fmt, name, pax=None) -> io.BytesIO:
    "A tar that `tarfile` writes in format `fmt` holding one member `name`."
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode='w', format=fmt, pax_headers=pax or {}) as tar:
        info = tarfile.TarInfo(name); info.size = 1; tar.addfile(info, io.BytesIO(b'x'))
    return b


@pytest.mark.parametrize('fmt, name, pax, why', [
    (tarfile.GNU_FORMAT, f"bg_000_fg_000_orig_00{'0' * 90}.jpg", None, 'is not a plain file'),  # a GNU long name
    (tarfile.PAX_FORMAT, JPG, {'comment': 'x'}, 'is not a plain file'),
    (tarfile.PAX_FORMAT, f"{'é' * 60}.jpg", None, 'is not a plain file'),  # non-ASCII: a pax path
    (tarfile.USTAR_FORMAT, f"sub/{'d' * 100}/{JPG}", None, 'is no file of a composite'),  # a USTAR prefix
    (tarfile.USTAR_FORMAT, 'bg_000_fg_000_orig_0é.jpg', None, 'is no file of a composite')])
def test_names_tar_readers_would_read_otherwise_are_refused(fmt, name, pax, why):
    with pytest.raises(BadInput, match=why): shard_index(_tar(fmt, name, pax), 'x.tar', 'bg_000')


def test_a_bad_checksum_is_refused():
    b = bytearray(_tar(tarfile.USTAR_FORMAT, JPG).getvalue()); b[0] = ord('c')  # the name changed, not the checksum
    with pytest.raises(BadInput, match='checksum'): shard_index(io.BytesIO(bytes(b)), 'x.tar', 'bg_000')


def test_composites_without_shards_refuse_a_dataset_with_a_shards_folder(sources, tmp_path):
    "An empty `shards/` made the store a sharded one: the composites of a run without --shards were held, never written, and listed in the manifest."
    ds = Path(shutil.copytree(sources, tmp_path/'ds')); (ds/SHARDS).mkdir()
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'composites', str(ds), '--positions', '1', '--backgrounds', '1', '--foregrounds', '1', '--workers', '1'],
                       capture_output=True, text=True)
    assert r.returncode == 2 and f'{ds/SHARDS}: there' in r.stderr and '--shards' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (ds/'manifest.csv').exists()


@pytest.mark.parametrize('make', [os.mkfifo, os.mkdir], ids=['pipe', 'folder'])
def test_a_shard_that_is_no_file_is_refused(sources, tmp_path, make):
    "A pipe named as a shard blocked the depth stage for ever on open(); a folder gave Python's own words."
    ds = Path(shutil.copytree(sources, tmp_path/'ds'))
    make_composites(ds, CompositesJob(positions=1, shards=True), backgrounds=1, foregrounds=1, workers=1, progress=False)
    (shard := ds/SHARDS/'bg_000.tar').unlink(); make(shard)
    r = subprocess.run([sys.executable, '-m', 'depthseg.cli', 'depth', str(ds), '--backend', 'exact', '--workers', '1'], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'Traceback' not in r.stderr and r.stderr.strip().splitlines()[-1] == f'depthseg depth: error: {shard}: not a plain file', r.stderr
