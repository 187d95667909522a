"PNG depth maps written by `encode_png`: the chunks as the PNG spec lays them out, and real maps read back by Pillow and TensorFlow as Pillow wrote them before."
import io, struct, zlib

import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from depthseg.composites import CompositesJob, make_composites
from depthseg.depth import QUALITY_KEY, DepthSpec, make_depth, read_quality, read_quality_table
from depthseg.layout import depth_files
from depthseg.pixels import encode_png
from depthseg.store import FolderStore, iter_manifest


def chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    "Type and data of each chunk of `png`, its CRC checked."
    assert png[:8] == b'\x89PNG\r\n\x1a\n'
    out, at = [], 8
    while at < len(png):
        n, kind = struct.unpack('>I4s', png[at:at + 8]); data = png[at + 8:at + 8 + n]
        assert struct.unpack('>I', png[at + 8 + n:at + 12 + n])[0] == zlib.crc32(kind + data), kind
        out.append((kind, data)); at += 12 + n
    assert at == len(png)
    return out


def unfiltered(raw: bytes, h: int, row: int, bpp: int) -> np.ndarray:
    "Bytes of the scanlines `raw` (h rows of `row` bytes after their filter byte) unfiltered, for the filter types `encode_png` may use."
    lines, out = np.frombuffer(raw, np.uint8).reshape(h, row + 1), np.zeros((h + 1, row), np.uint8)
    for y, (kind, *line) in enumerate(lines):
        assert kind == 2, kind  # Up: each byte plus the one above (0 above the first row)
        out[y + 1] = out[y] + np.array(line, np.uint8)
    return out[1:]


@pytest.mark.parametrize('dtype', [np.uint8, np.uint16])
@pytest.mark.parametrize('shape', [(1, 1), (1, 7), (7, 1), (33, 17)])
def test_chunks_follow_the_spec(dtype, shape):
    top = np.iinfo(dtype).max
    a = np.random.default_rng(shape[0]).integers(0, top + 1, shape, dtype=dtype); a.flat[0], a.flat[-1] = 0, top
    parts = chunks(encode_png(a, {'depthseg:quality': '{"flip": 0.5}', 'Comment': 'caf\u00e9'}))
    assert [k for k, _ in parts] == [b'IHDR', b'tEXt', b'tEXt', b'IDAT', b'IEND'] and parts[-1][1] == b''
    assert parts[0][1] == struct.pack('>IIBBBBB', shape[1], shape[0], 8 * a.itemsize, 0, 0, 0, 0)
    assert parts[1][1] == b'depthseg:quality\0{"flip": 0.5}' and parts[2][1] == b'Comment\0caf\xe9'
    rows = unfiltered(zlib.decompress(parts[3][1]), shape[0], shape[1] * a.itemsize, a.itemsize)
    assert np.array_equal(rows.view('>u2' if dtype == np.uint16 else np.uint8), a)


def as_pillow_wrote(eight: np.ndarray, text: str) -> bytes:
    "The 8-bit map as `encode_maps` wrote it before `encode_png`."
    info, b = PngInfo(), io.BytesIO(); info.add_text(QUALITY_KEY, text)
    Image.fromarray(eight).save(b, 'PNG', pnginfo=info, compress_type=zlib.Z_RLE); return b.getvalue()


def test_real_maps_read_back_as_before(dataset):
    "A real run's 8- and 16-bit maps: the same pixels through Pillow and TensorFlow, the same text and figures as Pillow's files gave."
    import tensorflow as tf
    make_composites(dataset, CompositesJob(positions=1), backgrounds=2, progress=False)
    make_depth(dataset, DepthSpec('exact', full_precision=True, flip_check=1), progress=False)
    store = FolderStore(dataset)
    table = {r['id']: r for r in read_quality_table(store)}
    for r in list(iter_manifest(store))[:12]:
        eight, sixteen = ((dataset/f).read_bytes() for f in depth_files(r['bg'], r['id']))
        with Image.open(io.BytesIO(eight)) as im8, Image.open(io.BytesIO(sixteen)) as im16:
            a8, a16, info = np.asarray(im8), np.asarray(im16), im8.info
        assert a8.dtype == np.uint8 and a16.dtype == np.uint16 and a8.std() > 0
        assert np.array_equal(tf.io.decode_png(eight).numpy()[..., 0], a8)
        assert np.array_equal(tf.io.decode_png(sixteen, dtype=tf.uint16).numpy()[..., 0], a16)
        assert np.abs(a16 / 257 - a8).max() <= 0.5 + 1e-9  # one map, at two precisions
        before = as_pillow_wrote(a8, info[QUALITY_KEY])
        with Image.open(io.BytesIO(before)) as im: assert im.info == info and np.array_equal(np.asarray(im), a8)
        assert read_quality(eight) == read_quality(before) == {k: v for k, v in table[r['id']].items() if k != 'id'}
        assert read_quality(eight)['flip'] is not None  # figures there, not the defaults
        assert encode_png(a8, {QUALITY_KEY: info[QUALITY_KEY]}) == eight and encode_png(a16) == sixteen  # the same bytes again
