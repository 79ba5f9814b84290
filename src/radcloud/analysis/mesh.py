"""Surface meshes from label maps, and their STL / OBJ / GLB files.

Meshes are extracted by marching tetrahedra (each grid cube cut into six
tetrahedra of the Kuhn triangulation, which tiles space consistently, so the
surface is closed and vertices on shared edges are shared).  This stands in
for marching cubes: scikit-image is not installed here, and the tetrahedral
variant needs no 256-case table.  The label is smoothed a little (Gaussian,
``SMOOTH_VOXELS``) and cut at 0.5, which puts the surface halfway between
inside and outside voxel centres, and is resampled to at most
``MAX_STEP_MM`` per vertex spacing on fine grids to keep files small.
Vertices are in patient coordinates (mm, LPS) through the volume's geometry.

Writers: binary STL (one solid per file), Wavefront OBJ (one object per mesh)
and GLB (glTF 2.0 binary, written with ``struct`` + ``json``: one glTF mesh
per label with its colour; positions in metres, +Y the patient's head, +Z the
patient's front, so a glTF viewer shows the patient facing the camera).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from radcloud.analysis.base import Code, Mesh
from radcloud.volume.geometry import Geometry

SMOOTH_VOXELS = 0.7
MAX_STEP_MM = 1.6

# Kuhn triangulation: each tetrahedron walks from corner (0,0,0) to (1,1,1)
# one axis at a time, in each of the 6 axis orders.
_PERMS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _tets() -> np.ndarray:
    out = []
    for perm in _PERMS:
        corner = [0, 0, 0]
        path = [tuple(corner)]
        for axis in perm:
            corner[axis] = 1
            path.append(tuple(corner))
        out.append(path)
    return np.array(out, np.int64)  # (6 tets, 4 corners, 3 offsets (k, j, i))


_TETS = _tets()


def marching_tetrahedra(field: np.ndarray, level: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(vertices (n, 3) in index space (k, j, i), faces (m, 3)) of ``field == level``.

    Triangles wind counter-clockwise seen from outside (field below ``level``).
    """
    f = np.asarray(field, np.float32)
    nk, nj, ni = f.shape
    inside = f > level
    # cubes that straddle the level: any of their 8 corners differs from corner 0
    c0 = inside[:-1, :-1, :-1]
    mixed = np.zeros(c0.shape, bool)
    for dk in (0, 1):
        for dj in (0, 1):
            for di in (0, 1):
                mixed |= inside[dk : nk - 1 + dk, dj : nj - 1 + dj, di : ni - 1 + di] != c0
    cubes = np.argwhere(mixed)
    if len(cubes) == 0:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64)
    strides = np.array([nj * ni, ni, 1], np.int64)
    flat = f.ravel()
    corners = cubes[:, None, None, :] + _TETS[None]  # (c, 6, 4, 3)
    gid = (corners * strides).sum(-1).reshape(-1, 4)  # (c*6, 4) grid point ids
    val = flat[gid]
    ins = val > level
    n_in = ins.sum(1)
    tris: list[np.ndarray] = []  # each (t, 3, 2): edge endpoints (grid ids) per vertex
    inner: list[np.ndarray] = []  # one inside grid id per triangle (orientation)
    for count in (1, 3):
        sel = n_in == count
        if not sel.any():
            continue
        g, b = gid[sel], ins[sel]
        odd = b if count == 1 else ~b  # the lone corner
        lone = np.argmax(odd, axis=1)
        others = np.array([[m for m in range(4) if m != x] for x in range(4)])[lone]
        lone_id = g[np.arange(len(g)), lone]
        oth = np.take_along_axis(g, others, axis=1)
        edges = np.stack([np.stack([lone_id, oth[:, m]], 1) for m in range(3)], 1)
        tris.append(edges)
        inner.append(lone_id if count == 1 else oth[:, 0])
    sel = n_in == 2
    if sel.any():
        g, b = gid[sel], ins[sel]
        order = np.argsort(~b, axis=1, kind="stable")  # inside corners first
        s = np.take_along_axis(g, order, axis=1)
        a0, a1, b0, b1 = s[:, 0], s[:, 1], s[:, 2], s[:, 3]
        # quad a0b0, a0b1, a1b1, a1b0 -> two triangles
        e = [np.stack([a0, b0], 1), np.stack([a0, b1], 1), np.stack([a1, b1], 1),
             np.stack([a1, b0], 1)]  # fmt: skip
        tris.append(np.stack([e[0], e[1], e[2]], 1))
        tris.append(np.stack([e[0], e[2], e[3]], 1))
        inner += [a0, a0]
    edges = np.concatenate(tris)  # (t, 3, 2)
    inside_id = np.concatenate(inner)
    pairs = np.sort(edges.reshape(-1, 2), axis=1)
    keys, index = np.unique(pairs[:, 0] * np.int64(f.size) + pairs[:, 1], return_inverse=True)
    uniq = np.stack([keys // f.size, keys % f.size], 1)
    va, vb = flat[uniq[:, 0]], flat[uniq[:, 1]]
    t = np.clip((level - va) / np.where(vb != va, vb - va, 1.0), 0.0, 1.0)
    pa = np.stack(np.unravel_index(uniq[:, 0], f.shape), 1).astype(np.float64)
    pb = np.stack(np.unravel_index(uniq[:, 1], f.shape), 1).astype(np.float64)
    verts = pa + t[:, None] * (pb - pa)
    faces = index.reshape(-1, 3).astype(np.int64)
    # orient: the normal points away from the triangle's inside corner
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    normal = np.cross(v1 - v0, v2 - v0)
    pin = np.stack(np.unravel_index(inside_id, f.shape), 1).astype(np.float64)
    flip = (normal * (v0 - pin)).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]
    keep = np.linalg.norm(normal, axis=1) > 1e-12
    return verts, faces[keep]


def label_mesh(
    mask: np.ndarray,
    geometry: Geometry,
    name: str,
    code: Code | None = None,
    color: tuple[int, int, int] = (255, 255, 255),
    smooth: float = SMOOTH_VOXELS,
    max_step_mm: float = MAX_STEP_MM,
) -> Mesh:
    """The surface of boolean ``mask`` ([k, j, i]) in patient mm (see the module docstring)."""
    if not mask.any():
        return Mesh(name, np.zeros((0, 3)), np.zeros((0, 3), np.int64), code, color)
    sp = geometry.spacing  # (i, j, k) column norms
    step = [max(1, int(round(max_step_mm / float(sp[a])))) for a in (2, 1, 0)]
    pad = 2 + max(step)
    box = [slice(max(0, int(a.min()) - pad), int(a.max()) + pad + 1) for a in np.nonzero(mask)]
    sub = mask[tuple(box)].astype(np.float32)
    sigma = [smooth * max(1.0, s / 2.0) for s in step]
    field = ndimage.gaussian_filter(sub, sigma) if smooth > 0 else sub
    field = np.pad(field[:: step[0], :: step[1], :: step[2]], 1)  # closed at the box edge
    verts, faces = marching_tetrahedra(field, 0.5)
    if len(verts) == 0:
        return Mesh(name, verts, faces, code, color)
    kji = (verts - 1.0) * np.array(step) + np.array([b.start for b in box])
    ijk = kji[:, ::-1]
    patient = geometry.to_patient(ijk)
    # (k, j, i) -> (i, j, k) is a mirror, and so is a grid with a left-handed affine:
    # the winding flips unless both apply
    if np.linalg.det(geometry.affine) > 0:
        faces = faces[:, ::-1]
    return Mesh(name, patient, faces, code, color)


def volume_ml(mesh: Mesh) -> float:
    """Enclosed volume (mL) of a closed, outward-wound mesh (divergence theorem)."""
    v = mesh.vertices[mesh.faces]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6.0 / 1000)


# ----------------------------------------------------------------------- writers


def to_stl(mesh: Mesh) -> bytes:
    """Binary STL: 80-byte header, triangle count, then normal + 3 vertices + 0 per triangle."""
    v = mesh.vertices[mesh.faces].astype(np.float32)
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    rec = np.zeros(len(v), dtype=[("n", "<f4", 3), ("v", "<f4", (3, 3)), ("a", "<u2")])
    rec["n"], rec["v"] = n, v
    header = f"radcloud {mesh.name} (patient LPS, mm)".encode()[:80].ljust(80, b" ")
    return header + struct.pack("<I", len(v)) + rec.tobytes()


def to_obj(meshes: Sequence[Mesh]) -> bytes:
    """Wavefront OBJ, one object per mesh, vertices in patient mm (LPS)."""
    lines = ["# radcloud meshes, patient coordinates (LPS, mm)"]
    base = 1
    for m in meshes:
        lines.append(f"o {m.name.replace(' ', '_')}")
        lines += [f"v {x:.3f} {y:.3f} {z:.3f}" for x, y, z in m.vertices]
        lines += [f"f {a + base} {b + base} {c + base}" for a, b, c in m.faces]
        base += len(m.vertices)
    return ("\n".join(lines) + "\n").encode()


#: LPS (mm) -> glTF (m): x stays, +Y is superior (+z), +Z is anterior (-y)
_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]) / 1000.0


def to_glb(meshes: Sequence[Mesh]) -> bytes:
    """glTF 2.0 binary: one node + mesh + material per label (see the module docstring)."""
    blob = bytearray()
    views: list[dict[str, Any]] = []
    accessors: list[dict[str, Any]] = []
    gl_meshes: list[dict[str, Any]] = []
    materials: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    for m in meshes:
        if len(m.faces) == 0:
            continue
        pos = (m.vertices @ _TO_GLTF.T).astype("<f4")
        idx = m.faces.astype("<u4").ravel()
        for data, target in ((pos, 34962), (idx, 34963)):
            while len(blob) % 4:
                blob.append(0)
            views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": data.nbytes,
                          "target": target})  # fmt: skip
            blob += data.tobytes()
        accessors.append({"bufferView": len(views) - 2, "componentType": 5126,
                          "count": len(pos), "type": "VEC3",
                          "min": pos.min(0).tolist(), "max": pos.max(0).tolist()})  # fmt: skip
        accessors.append({"bufferView": len(views) - 1, "componentType": 5125,
                          "count": len(idx), "type": "SCALAR"})  # fmt: skip
        r, g, b = (c / 255.0 for c in m.color)
        materials.append({"name": m.name, "doubleSided": True,
                          "pbrMetallicRoughness": {"baseColorFactor": [r, g, b, 1.0],
                                                   "metallicFactor": 0.0,
                                                   "roughnessFactor": 0.8}})  # fmt: skip
        gl_meshes.append({"name": m.name, "primitives": [{
            "attributes": {"POSITION": len(accessors) - 2}, "indices": len(accessors) - 1,
            "material": len(materials) - 1, "mode": 4}]})  # fmt: skip
        extras = {"code": m.code.as_json()} if m.code is not None else {}
        nodes.append({"name": m.name, "mesh": len(gl_meshes) - 1, "extras": extras})
    while len(blob) % 4:
        blob.append(0)
    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "radcloud"},
        "scene": 0,
        "scenes": [{"nodes": list(range(len(nodes)))}],
        "nodes": nodes,
        "meshes": gl_meshes,
        "materials": materials,
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    text = json.dumps(doc, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    return (struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<I4s", len(text), b"JSON")
            + text + struct.pack("<I4s", len(blob), b"BIN\x00") + bytes(blob))  # fmt: skip


def read_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """(JSON document, binary chunk) of a GLB, checking header, chunk lengths and accessors.

    Raises ``ValueError`` on anything out of place; used by tests and as a self-check.
    """
    if len(data) < 20:
        raise ValueError("too short for a GLB")
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2 or total != len(data):
        raise ValueError("bad GLB header")
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    if jtype != b"JSON" or jlen % 4 or 20 + jlen > total:
        raise ValueError("bad JSON chunk")
    doc = json.loads(data[20 : 20 + jlen])
    binary = b""
    off = 20 + jlen
    if off < total:
        blen, btype = struct.unpack_from("<I4s", data, off)
        if btype != b"BIN\x00" or off + 8 + blen != total or blen % 4:
            raise ValueError("bad BIN chunk")
        binary = data[off + 8 : off + 8 + blen]
    if doc.get("asset", {}).get("version") != "2.0":
        raise ValueError("not glTF 2.0")
    if doc["buffers"][0]["byteLength"] != len(binary):
        raise ValueError("buffer length differs from the BIN chunk")
    sizes = {5126: 4, 5125: 4}
    width = {"VEC3": 3, "SCALAR": 1}
    for acc in doc["accessors"]:
        view = doc["bufferViews"][acc["bufferView"]]
        need = acc["count"] * width[acc["type"]] * sizes[acc["componentType"]]
        if need != view["byteLength"] or view["byteOffset"] + need > len(binary):
            raise ValueError("accessor does not fit its buffer view")
        if view["byteOffset"] % 4:
            raise ValueError("misaligned buffer view")
    for mesh in doc["meshes"]:
        for prim in mesh["primitives"]:
            n_vert = doc["accessors"][prim["attributes"]["POSITION"]]["count"]
            acc = doc["accessors"][prim["indices"]]
            view = doc["bufferViews"][acc["bufferView"]]
            idx = np.frombuffer(binary, "<u4", acc["count"], view["byteOffset"])
            if acc["count"] % 3 or (len(idx) and int(idx.max()) >= n_vert):
                raise ValueError("indices out of range")
    return doc, binary
