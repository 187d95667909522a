"The sample rooms' true depth: planes where the camera record puts them, image edges where the depth's are, files that read back."
import json
from functools import lru_cache

import numpy as np
import pytest
from PIL import Image

from depthseg.samples import (DEPTH_DIR, ROOM_SIZES, SCENES, VFOV, _room, make_samples, room_camera, room_depth, sample_camera,
                              sample_depth, sample_dir)

CASES = [(i, ROOM_SIZES[i % 3]) for i in range(10)] + [(11, (97, 61))]  # the shipped rooms, and odd sizes (a ray along the axis)


@lru_cache
def rendered(seed, size):
    "Image, depth and camera record of room `seed` at `size`."
    return *_room(seed, size), room_camera(seed, size)


def row_centres(size):
    return np.arange(size[1]) + .5


@pytest.mark.parametrize('seed,size', CASES)
def test_depth_is_positive_finite_and_within_the_room(seed, size):
    _, depth, cam = rendered(seed, size)
    assert depth.dtype == np.float32 and depth.shape == (size[1], size[0])
    assert np.isfinite(depth).all() and depth.min() > .5
    assert depth.max() == np.float32(cam['room_depth_m'])  # the back wall is the farthest thing


@pytest.mark.parametrize('seed,size', CASES)
def test_floor_follows_its_plane(seed, size):
    "Bottom centre rows always show bare floor: depth camera_height * f / (v - cy) at row centre v."
    _, depth, cam = rendered(seed, size)
    W, H = size
    f, h, (cx, cy) = cam['focal_px'], cam['camera_height_m'], cam['principal_point_px']
    assert (cx, cy) == (W / 2, H / 2) and f == pytest.approx(H / 2 / np.tan(np.deg2rad(VFOV / 2)))
    rows, cols = slice(H - max(H // 10, 2), H), slice(int(W * .4), int(W * .6) + 1)
    expected = h * f / (row_centres(size)[rows] - cy)
    np.testing.assert_allclose(depth[rows, cols], np.broadcast_to(expected[:, None], depth[rows, cols].shape), rtol=1e-5)


@pytest.mark.parametrize('seed,size', CASES)
def test_back_wall_is_at_room_depth(seed, size):
    "The image centre sees the back wall; what lies at the room's depth lies within the back wall's projection, and fills most of it."
    _, depth, cam = rendered(seed, size)
    W, H = size
    f, D, h, left = cam['focal_px'], cam['room_depth_m'], cam['camera_height_m'], cam['camera_from_left_wall_m']
    assert depth[H // 2, W // 2] == np.float32(D)
    u0, u1 = W / 2 - f * left / D, W / 2 + f * (cam['room_width_m'] - left) / D
    v0, v1 = H / 2 - f * (cam['room_height_m'] - h) / D, H / 2 + f * h / D
    r, c = np.nonzero(depth == np.float32(D))
    assert (c + .5 >= u0).all() and (c + .5 <= u1).all() and (r + .5 >= v0).all() and (r + .5 <= v1).all()
    inside = (np.clip(u1, 0, W) - np.clip(u0, 0, W)) * (np.clip(v1, 0, H) - np.clip(v0, 0, H))
    assert len(r) > .5 * inside, (len(r), inside)


def steps_across(img, region, ks=range(-4, 5)):
    "Mean colour step of `img` across the edges of mask `region`, moved k pixels across them, for each k."
    a, out = np.asarray(img, float), []
    for k in ks:
        steps = []
        for axis in (0, 1):
            m, b = np.moveaxis(region, axis, 0), np.moveaxis(a, axis, 0)
            i, j = np.nonzero(m[:-1] != m[1:])  # edges between i and i + 1 along axis
            ok = (i + k >= 0) & (i + k + 1 < len(m))
            i, j = i[ok] + k, j[ok]
            steps.append(np.abs(b[i + 1, j] - b[i, j]).sum(-1))
        out.append(np.concatenate(steps).mean())
    return np.array(out)


@pytest.mark.parametrize('seed,size', CASES[:10])
def test_image_changes_where_the_depth_says_surfaces_end(seed, size):
    "Image and depth come from the same geometry: the back wall's and the floor's edges in the depth map are the image's edges."
    im, depth, cam = rendered(seed, size)
    f, h, D = cam['focal_px'], cam['camera_height_m'], cam['room_depth_m']
    v = row_centres(size)
    on_floor = np.abs(depth - h * f / np.where(v > size[1] / 2, v - size[1] / 2, np.nan)[:, None]) < 1e-4 * depth
    for region in (depth == np.float32(D), on_floor):
        s = steps_across(im, region)
        assert np.argmax(s) == 4 and s[4] > 1.25 * np.delete(s, 4).max(), s.round()
        assert np.argmax(steps_across(im, np.roll(region, (2, 2), (0, 1)))) == 2  # the check sees a map two pixels off


def test_make_samples_is_deterministic(tmp_path):
    make_samples(tmp_path/'a'); make_samples(tmp_path/'b')
    files = sorted(p.relative_to(tmp_path/'a') for p in (tmp_path/'a').rglob('*') if p.is_file())
    assert len(files) == 10 + 10 + 1 + 10 + 1
    for p in files: assert (tmp_path/'a'/p).read_bytes() == (tmp_path/'b'/p).read_bytes(), p


def test_written_depth_reads_back(tmp_path):
    "16-bit millimetres within half a millimetre of the rendered depth, no zeros; the records are room_camera's."
    make_samples(tmp_path, n_backgrounds=3, n_people=1, n_dogs=0)
    assert sorted(p.name for p in (tmp_path/'backgrounds').iterdir()) == ['room_00.jpg', 'room_01.jpg', 'room_02.jpg']
    scenes = json.loads((tmp_path/DEPTH_DIR/SCENES).read_text())
    assert set(scenes) == {'units', 'rooms'} and 'millimetres' in scenes['units']['depth']
    for i, (name, rec) in enumerate(scenes['rooms'].items()):
        assert rec == {'seed': i, 'depth_png': f'room_{i:02d}.png', **room_camera(i, ROOM_SIZES[i])}
        png = Image.open(tmp_path/DEPTH_DIR/rec['depth_png'])
        mm = np.asarray(png)
        assert png.mode == 'I;16' and mm.dtype == np.uint16 and mm.min() > 0
        assert Image.open(tmp_path/'backgrounds'/name).size == png.size == tuple(rec['size'])
        assert np.abs(mm / 1000 - room_depth(i, ROOM_SIZES[i])).max() <= .0005 + 1e-6


def test_shipped_depth_is_current():
    "Every shipped background has its depth map and record, and they are what the code renders now."
    names = sorted(p.name for p in sample_dir('backgrounds').iterdir())
    assert len(names) == 10 and len(list(sample_dir('foregrounds').iterdir())) == 10
    assert sorted(p.name for p in sample_dir(DEPTH_DIR).iterdir()) == [n.replace('.jpg', '.png') for n in names] + [SCENES]
    for name in names:
        cam = sample_camera(name)
        assert cam == {'seed': cam['seed'], 'depth_png': name.replace('.jpg', '.png'), **room_camera(cam['seed'], tuple(cam['size']))}
        depth = sample_depth(name)
        assert depth.dtype == np.float32 and depth.shape[::-1] == Image.open(sample_dir('backgrounds')/name).size
        assert np.abs(depth - room_depth(cam['seed'], tuple(cam['size']))).max() <= .0005 + 1e-6


def test_sample_dir_refuses_other_kinds():
    with pytest.raises(ValueError, match='backgrounds_depth'): sample_dir('depth')
