"""Surface meshes: accuracy against an exact sphere, closedness, and the STL / OBJ / GLB files."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from radcloud.analysis import mesh
from radcloud.analysis.base import Code, Mesh
from radcloud.volume.geometry import Geometry

SPACING = np.array([0.8, 0.8, 1.25])  # x, y, z mm: anisotropic like a CT
CENTRE, RADIUS = np.array([1.3, -2.1, 0.7]), 20.0


def _ball(affine: np.ndarray) -> tuple[np.ndarray, Geometry]:
    shape = (64, 80, 80)
    origin = -(np.abs(affine) @ np.array([40.0, 40.0, 32.0]))
    origin = np.where(np.diag(affine) < 0, -origin, origin)
    geometry = Geometry(shape=shape, origin=origin, affine=affine)
    k, j, i = np.indices(shape)
    pts = np.stack([i, j, k], -1) @ affine.T + origin
    return np.linalg.norm(pts - CENTRE, axis=-1) <= RADIUS, geometry


@pytest.fixture(scope="module")
def ball() -> Mesh:
    mask, geometry = _ball(np.diag(SPACING))
    return mesh.label_mesh(mask, geometry, "ball", Code("39607008", "Lung"), (200, 100, 50))


def test_the_surface_lies_within_half_a_millimetre_of_the_true_sphere(ball: Mesh) -> None:
    d = np.abs(np.linalg.norm(ball.vertices - CENTRE, axis=1) - RADIUS)
    print(f"sphere r=20 mm: mean {d.mean():.3f} mm, 95th percentile {np.percentile(d, 95):.3f} mm")
    assert d.mean() < 0.25
    assert np.percentile(d, 95) < 0.5
    true_ml = 4 / 3 * np.pi * RADIUS**3 / 1000
    assert mesh.volume_ml(ball) == pytest.approx(true_ml, rel=0.02)  # positive: wound outwards


def test_the_mesh_is_closed_and_every_edge_has_two_triangles(ball: Mesh) -> None:
    f = ball.faces
    edges = np.sort(np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]), 1)
    _u, counts = np.unique(edges, axis=0, return_counts=True)
    assert set(counts.tolist()) == {2}
    # directed edges appear once each way: consistent winding
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(directed)


def test_a_mirrored_grid_still_gives_an_outward_surface_in_patient_space() -> None:
    mask, geometry = _ball(np.diag([SPACING[0], SPACING[1], -SPACING[2]]))
    m = mesh.label_mesh(mask, geometry, "ball")
    d = np.abs(np.linalg.norm(m.vertices - CENTRE, axis=1) - RADIUS)
    assert d.mean() < 0.25
    assert mesh.volume_ml(m) > 0


def test_an_empty_mask_gives_an_empty_mesh() -> None:
    _mask, geometry = _ball(np.diag(SPACING))
    m = mesh.label_mesh(np.zeros(geometry.shape, bool), geometry, "none")
    assert m.vertices.shape == (0, 3) and m.faces.shape == (0, 3)


def test_binary_stl_has_its_header_count_and_records(ball: Mesh) -> None:
    data = mesh.to_stl(ball)
    (count,) = struct.unpack_from("<I", data, 80)
    assert count == len(ball.faces)
    assert len(data) == 84 + 50 * count
    first = np.frombuffer(data, "<f4", 12, 84)
    assert np.allclose(first[3:6], ball.vertices[ball.faces[0, 0]], atol=1e-3)
    normal = first[:3]
    assert np.linalg.norm(normal) == pytest.approx(1.0, abs=1e-5)


def test_obj_lists_vertices_and_one_based_faces_per_object(ball: Mesh) -> None:
    other = Mesh("small", ball.vertices[:3], np.array([[0, 1, 2]]))
    text = mesh.to_obj([ball, other]).decode()
    lines = text.splitlines()
    assert "o ball" in lines and "o small" in lines
    assert sum(1 for x in lines if x.startswith("v ")) == len(ball.vertices) + 3
    last_face = [x for x in lines if x.startswith("f ")][-1]
    n = len(ball.vertices)
    assert last_face == f"f {n + 1} {n + 2} {n + 3}"


def test_glb_parses_with_right_chunks_accessors_and_colours(ball: Mesh) -> None:
    second = Mesh("shifted", ball.vertices + 50.0, ball.faces, None, (0, 0, 255))
    data = mesh.to_glb([ball, second])
    doc, binary = mesh.read_glb(data)  # header magic, chunk lengths, accessor sizes, indices
    assert len(doc["meshes"]) == 2 and len(doc["nodes"]) == 2
    pos = doc["accessors"][doc["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    assert pos["count"] == len(ball.vertices)
    idx = doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]
    assert idx["count"] == 3 * len(ball.faces)
    colour = doc["materials"][1]["pbrMetallicRoughness"]["baseColorFactor"]
    assert colour == [0.0, 0.0, 1.0, 1.0]
    assert doc["nodes"][0]["extras"]["code"]["value"] == "39607008"
    # positions in metres, patient head (+z) up (+Y), front (-y) towards +Z
    view = doc["bufferViews"][pos["bufferView"]]
    xyz = np.frombuffer(binary, "<f4", 3 * pos["count"], view["byteOffset"]).reshape(-1, 3)
    assert np.allclose(xyz[:, 1], ball.vertices[:, 2] / 1000, atol=1e-6)
    assert np.allclose(xyz[:, 2], -ball.vertices[:, 1] / 1000, atol=1e-6)
    assert np.allclose(pos["min"], xyz.min(0)) and np.allclose(pos["max"], xyz.max(0))


def test_a_damaged_glb_is_refused(ball: Mesh) -> None:
    data = bytearray(mesh.to_glb([ball]))
    with pytest.raises(ValueError):
        mesh.read_glb(bytes(data[:-4]))
    jlen = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + jlen])
    doc["accessors"][0]["count"] += 1
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    rest = data[20 + jlen :]
    bad = struct.pack("<4sII", b"glTF", 2, 20 + len(text) + len(rest))
    bad += struct.pack("<I4s", len(text), b"JSON") + text + rest
    with pytest.raises(ValueError, match="accessor"):
        mesh.read_glb(bad)
