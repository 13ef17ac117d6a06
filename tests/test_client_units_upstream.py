"""Client pieces of issue 11: depth units, object size policy, the negative-prompt and chunk options."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from objvid.client import inputs as io
from objvid.client import object_size
from objvid.client.pipeline import GenerateConfig, generate_options


def test_depth_units_convert_to_metres_and_png_stays_millimetres(tmp_path):
    d = np.array([[1500.0, 0.0], [2500.0, np.nan]], np.float32)
    np.save(tmp_path / "d.npy", d)
    m, valid = io.load_depth(tmp_path / "d.npy", units="mm")
    np.testing.assert_allclose(m[valid], [1.5, 2.5])
    cm, _ = io.load_depth(tmp_path / "d.npy", units="cm")
    np.testing.assert_allclose(cm[valid], [15.0, 25.0])
    same, _ = io.load_depth(tmp_path / "d.npy")  # default metres
    np.testing.assert_allclose(same[valid], [1500.0, 2500.0])
    Image.fromarray(np.array([[1500, 0], [2500, 700]], np.uint16)).save(tmp_path / "d.png")
    for units in ("m", "mm"):  # a 16-bit PNG is millimetres whatever --depth-units says
        p, _ = io.load_depth(tmp_path / "d.png", units=units)
        np.testing.assert_allclose(p, [[1.5, 0.0], [2.5, 0.7]], rtol=1e-6)
    with pytest.raises(ValueError, match="--depth-units"):
        io.load_depth(tmp_path / "d.npy", units="inch")


def test_real_size_only_when_scene_and_object_are_metric():
    file_scene = {"source": "file"}
    moge1 = {"source": "service", "model": "Ruicheng/moge-vitl"}
    moge2 = {"source": "service", "model": "Ruicheng/moge-2-vitl-normal"}
    assert object_size.metric_scene(file_scene) and object_size.metric_scene(moge2)
    assert not object_size.metric_scene(moge1)
    assert object_size.real_size_scale("shoe.ply", "mm", True) == 0.001
    assert object_size.real_size_scale("shoe.glb", None, True) == 1.0  # glTF is metres by spec
    assert object_size.real_size_scale("shoe.ply", None, True) is None  # unknown unit: heuristic
    assert object_size.real_size_scale("shoe.glb", "cm", False) is None  # relative depth: heuristic
    with pytest.raises(ValueError, match="--object-units"):
        object_size.real_size_scale("shoe.ply", "feet", True)


def test_negative_prompt_unset_leaves_the_server_default():
    cfg = GenerateConfig(image="x.png")
    assert not generate_options(cfg).HasField("negative_prompt")  # the server applies upstream's default
    assert generate_options(cfg, 3).chunk_index == 3  # fresh noise per chunk
    empty = generate_options(GenerateConfig(image="x.png", negative_prompt=""))
    assert empty.HasField("negative_prompt") and empty.negative_prompt == ""
