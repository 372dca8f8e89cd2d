"""The synthetic SMPL-X-format model: file format (through smplx itself), topology,
geometry, skinning, landmarks, shape/expression directions and determinism.

Independent references: smplx's loader and forward pass, the official v1.1 shapes written
out here, an edge-manifold check, a triangle-triangle intersection test and a winding
number, all written in this file.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from fitting import synthetic_model as sm
from fitting.joint_sets import SMPLX55

OFFICIAL_SHAPES = {
    "v_template": (10475, 3), "f": (20908, 3), "shapedirs": (10475, 3, 400),
    "posedirs": (10475, 3, 486), "J_regressor": (55, 10475), "weights": (10475, 55),
    "kintree_table": (2, 55), "hands_componentsl": (45, 45), "hands_componentsr": (45, 45),
    "hands_meanl": (45,), "hands_meanr": (45,), "lmk_faces_idx": (51,),
    "lmk_bary_coords": (51, 3), "dynamic_lmk_faces_idx": (79, 17),
    "dynamic_lmk_bary_coords": (79, 17, 3),
}
OFFICIAL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15,
                    15, 15, 20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38, 21, 40,
                    41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53]
NB = sm.NUM_BODY_VERTICES


@pytest.fixture(scope="session")
def body():
    return sm.build_body_mesh()


@pytest.fixture(scope="session")
def model_path(tmp_path_factory, body):
    folder = tmp_path_factory.getbasetemp() / "synthetic_bodymodel"
    return sm.write_synthetic_model(folder, seed=0, body=body)


@pytest.fixture(scope="session")
def arrays(model_path):
    with np.load(model_path) as data:
        return {k: data[k] for k in data.files}


def _smplx(path, **kw):
    import smplx

    args = dict(model_type="smplx", gender="neutral", use_pca=False, num_betas=10,
                num_expression_coeffs=10, use_face_contour=True)
    args.update(kw)
    return smplx.create(str(path), **args)


# ---------------------------------------------------------------------------------------
# Independent geometry checks


def edge_manifold_closed(faces: np.ndarray) -> bool:
    """Every directed edge appears once and its reverse once (closed, oriented 2-manifold)."""
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]).astype(np.int64)
    n = int(faces.max()) + 1
    key = e[:, 0] * n + e[:, 1]
    rev = e[:, 1] * n + e[:, 0]
    if len(np.unique(key)) != len(key):
        return False
    return bool(np.isin(rev, key).all())


def vertex_manifold(faces: np.ndarray) -> bool:
    """Each vertex's faces form a single fan (one cycle of edges opposite the vertex)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = int(faces.max()) + 1
    rows, a, b = [], [], []
    for c in range(3):
        rows.append(faces[:, c])
        a.append(faces[:, (c + 1) % 3])
        b.append(faces[:, (c + 2) % 3])
    v, a, b = np.concatenate(rows), np.concatenate(a), np.concatenate(b)
    # Link graph of every vertex, as one graph over nodes (v, neighbour).
    key_a, key_b = v * n + a, v * n + b
    keys, inv = np.unique(np.r_[key_a, key_b], return_inverse=True)
    m = len(key_a)
    g = sp.coo_matrix((np.ones(m), (inv[:m], inv[m:])), shape=(len(keys), len(keys)))
    _, labels = connected_components(g, directed=False)
    centre = keys // n
    pairs = np.unique(centre * (labels.max() + 1) + labels)
    n_comp = np.bincount(pairs // (labels.max() + 1), minlength=n)
    used = np.bincount(faces.ravel(), minlength=n) > 0
    return bool(np.all(n_comp[used] == 1))


def _segments_hit_triangles(p, q, tri, eps=1e-9):
    """(N,) whether segment p->q crosses triangle tri (N, 3, 3) (Moller-Trumbore)."""
    d = q - p
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    h = np.cross(d, e2)
    a = np.sum(e1 * h, axis=1)
    ok = np.abs(a) > 1e-18
    f = np.where(ok, 1.0 / np.where(ok, a, 1.0), 0.0)
    s = p - tri[:, 0]
    u = f * np.sum(s * h, axis=1)
    qv = np.cross(s, e1)
    v = f * np.sum(d * qv, axis=1)
    t = f * np.sum(e2 * qv, axis=1)
    return ok & (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps) & (t >= -eps) & (t <= 1 + eps)


def self_intersections(verts: np.ndarray, faces: np.ndarray) -> int:
    """Number of intersecting pairs of faces that share no vertex."""
    tri = verts[faces]
    lo, hi = tri.min(axis=1), tri.max(axis=1)
    centre = 0.5 * (lo + hi)
    radius = 0.5 * np.linalg.norm(hi - lo, axis=1)
    pairs = cKDTree(centre).query_pairs(2 * radius.max(), output_type="ndarray")
    i, j = pairs[:, 0], pairs[:, 1]
    overlap = np.all((lo[i] <= hi[j]) & (lo[j] <= hi[i]), axis=1)
    i, j = i[overlap], j[overlap]
    share = (faces[i][:, :, None] == faces[j][:, None, :]).any(axis=(1, 2))
    i, j = i[~share], j[~share]
    hit = np.zeros(len(i), dtype=bool)
    for a, b in ((i, j), (j, i)):
        for k in range(3):
            p, q = tri[a, k], tri[a, (k + 1) % 3]
            hit |= _segments_hit_triangles(p, q, tri[b])
    return int(hit.sum())


def winding_numbers(points: np.ndarray, verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N,) generalized winding number (1 inside a closed outward mesh, 0 outside)."""
    out = np.zeros(len(points))
    for n, p in enumerate(points):
        a, b, c = (verts[faces[:, k]] - p for k in range(3))
        la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
        det = np.einsum("ij,ij->i", a, np.cross(b, c))
        den = la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la \
            + np.einsum("ij,ij->i", c, a) * lb
        out[n] = np.sum(2 * np.arctan2(det, den)) / (4 * np.pi)
    return out


def test_geometry_checkers_on_known_meshes():
    import trimesh

    box = trimesh.creation.box()
    assert edge_manifold_closed(box.faces) and vertex_manifold(box.faces)
    assert not edge_manifold_closed(box.faces[:-1])
    assert self_intersections(box.vertices, box.faces) == 0
    two = trimesh.util.concatenate([box, box.copy().apply_translation([0.5, 0.5, 0.5])])
    assert self_intersections(two.vertices, two.faces) > 0
    w = winding_numbers(np.array([[0, 0, 0], [2.0, 0, 0]]), box.vertices, box.faces)
    np.testing.assert_allclose(w, [1, 0], atol=1e-9)


# ---------------------------------------------------------------------------------------
# File format


def test_every_key_at_official_shape(arrays):
    assert set(OFFICIAL_SHAPES) <= set(arrays)
    for key, shape in OFFICIAL_SHAPES.items():
        assert arrays[key].shape == shape, key
    assert arrays["kintree_table"][0].tolist() == OFFICIAL_PARENTS
    assert arrays["kintree_table"][1].tolist() == list(range(55))
    assert list(SMPLX55.parents) == OFFICIAL_PARENTS


def test_hard_coded_vertex_ids_match_smplx():
    from smplx.vertex_ids import vertex_ids

    from fitting.correspondence import SMPLX_VERTEX_IDS

    assert sm.LANDMARK_VERTEX_IDS == dict(vertex_ids["smplx"])
    assert SMPLX_VERTEX_IDS == dict(vertex_ids["smplx"])


@pytest.mark.parametrize("contour, n_joints", [(True, 144), (False, 127)])
def test_loads_through_smplx(model_path, contour, n_joints):
    model = _smplx(model_path, use_face_contour=contour, batch_size=2)
    out = model(return_verts=True)
    assert out.vertices.shape == (2, 10475, 3)
    assert out.joints.shape == (2, n_joints, 3)
    assert torch.isfinite(out.joints).all()


def test_smplx_rest_output_matches_template_and_regressor(model_path, arrays):
    model = _smplx(model_path, flat_hand_mean=True, dtype=torch.float64)
    out = model()
    np.testing.assert_allclose(out.vertices[0].detach().numpy(), arrays["v_template"], atol=1e-8)
    np.testing.assert_allclose(out.joints[0, :55].detach().numpy(),
                               arrays["J_regressor"] @ arrays["v_template"], atol=1e-8)


# ---------------------------------------------------------------------------------------
# Topology and geometry


def test_closed_manifold_genus0_with_unreferenced_spares(arrays):
    import trimesh

    v, f = arrays["v_template"], arrays["f"]
    assert f.min() == 0 and f.max() == NB - 1
    assert len(np.unique(f)) == NB  # 19 spare vertices are unreferenced
    mesh = trimesh.Trimesh(v[:NB], f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0  # outward normals
    assert edge_manifold_closed(f) and vertex_manifold(f)
    n_edges = len(f) * 3 // 2
    assert NB - n_edges + len(f) == 2  # Euler characteristic of a sphere
    # Spares duplicate body vertices (same position, same weights).
    spare = v[NB:]
    d, idx = cKDTree(v[:NB]).query(spare)
    assert np.all(d < 1e-12)
    np.testing.assert_array_equal(arrays["weights"][NB:], arrays["weights"][idx])


def test_no_self_intersection_at_rest(arrays):
    assert self_intersections(arrays["v_template"], arrays["f"]) == 0


@pytest.mark.parametrize("k", range(10))
def test_no_self_intersection_at_two_sigma(arrays, k):
    v0, f, dirs = arrays["v_template"], arrays["f"], arrays["shapedirs"].astype(np.float64)
    for s in (-2.0, 2.0):
        assert self_intersections(v0 + s * dirs[:, :, k], f) == 0, (k, s)


def test_adult_size_and_orientation(arrays):
    v = arrays["v_template"][:NB]
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.65 < height < 1.78
    J = arrays["J_regressor"] @ arrays["v_template"]
    j = SMPLX55.index
    assert J[j("left_shoulder"), 0] > 0 > J[j("right_shoulder"), 0]  # subject's left at +x
    assert J[j("head"), 1] > J[j("pelvis"), 1] > J[j("left_ankle"), 1]  # y up
    nose = arrays["v_template"][sm.LANDMARK_VERTEX_IDS["nose"]]
    assert nose[2] > J[j("head"), 2] + 0.08  # faces +z
    span = v[:, 0].max() - v[:, 0].min()
    assert 0.95 * height < span < 1.15 * height  # arms out


def test_regressor_reproduces_designed_joints(arrays):
    J = arrays["J_regressor"] @ arrays["v_template"]
    np.testing.assert_allclose(J, sm.rest_joints(), atol=1e-6)
    np.testing.assert_allclose(arrays["J_regressor"].sum(axis=1), 1.0, atol=1e-9)
    assert np.all(arrays["J_regressor"][:, NB:] == 0)


def test_joints_inside_body_and_children_beyond_parents(arrays):
    v, f = arrays["v_template"], arrays["f"]
    J = arrays["J_regressor"] @ v
    w = winding_numbers(J, v, f)
    assert np.all(w > 0.5), np.array(SMPLX55.names)[w <= 0.5]
    pelvis = J[0]
    face = {SMPLX55.index(n) for n in ("jaw", "left_eye_smplhf", "right_eye_smplhf")}
    for child, parent in enumerate(OFFICIAL_PARENTS):
        if parent < 0:
            continue
        if child in face:
            assert J[child, 2] > J[parent, 2], SMPLX55.names[child]  # in front of the head joint
        else:
            assert np.linalg.norm(J[child] - pelvis) > np.linalg.norm(J[parent] - pelvis), \
                SMPLX55.names[child]


def test_skinning_weights_rows_sum_to_one_and_are_local(arrays):
    W = arrays["weights"]
    np.testing.assert_allclose(W.sum(axis=1), 1.0, atol=1e-9)
    assert W.min() >= 0
    v = arrays["v_template"]
    J = arrays["J_regressor"] @ v
    # Each vertex is bound only to nearby bones: within 20 cm (half a trunk) of a segment
    # joint -> child.
    rows, cols = np.nonzero(W > 0)
    best = np.full(len(rows), np.inf)
    for joint in range(55):
        children = [c for c, p in enumerate(OFFICIAL_PARENTS) if p == joint] or [joint]
        sel = cols == joint
        for c in children:
            a, b = J[joint], J[c]
            ab = b - a
            t = np.clip((v[rows[sel]] - a) @ ab / max(ab @ ab, 1e-12), 0, 1)
            d = np.linalg.norm(v[rows[sel]] - (a + t[:, None] * ab), axis=1)
            best[sel] = np.minimum(best[sel], d)
    assert best.max() < 0.2


def test_bending_left_elbow_moves_only_left_forearm_and_hand(model_path, arrays):
    model = _smplx(model_path, dtype=torch.float64)
    rest = model().vertices[0].detach().numpy()
    body_pose = torch.zeros(1, 63, dtype=torch.float64)
    elbow = SMPLX55.index("left_elbow")
    body_pose[0, (elbow - 1) * 3 + 1] = np.pi / 2  # 90 degrees about y
    bent = model(body_pose=body_pose).vertices[0].detach().numpy()
    moved = np.linalg.norm(bent - rest, axis=1)
    W = arrays["weights"]
    j = SMPLX55.index
    legs = W[:, [j(f"{s}_{p}") for s in ("left", "right") for p in ("hip", "knee", "ankle", "foot")]]
    right_arm = W[:, [j("right_collar"), j("right_shoulder"), j("right_elbow"), j("right_wrist")]
                  + list(range(40, 55))]
    assert moved[legs.sum(axis=1) > 0.5].max() < 1e-6
    assert moved[right_arm.sum(axis=1) > 0.5].max() < 1e-6
    left_hand = W[:, [j("left_wrist")] + list(range(25, 40))].sum(axis=1) > 0.5
    assert moved[left_hand].min() > 0.1


# ---------------------------------------------------------------------------------------
# Landmarks


def test_landmark_vertices_on_matching_parts(arrays):
    v = arrays["v_template"]
    J = arrays["J_regressor"] @ v
    ids = sm.LANDMARK_VERTEX_IDS
    j = SMPLX55.index
    head = v[:NB][v[:NB, 1] > J[j("neck"), 1] + 0.02]
    nose = v[ids["nose"]]
    assert abs(nose[0]) < 0.01 and nose[2] > head[:, 2].max() - 0.003
    for s, side in ((1, "l"), (-1, "r")):
        eye, ear = v[ids[f"{side}eye"]], v[ids[f"{side}ear"]]
        assert s * eye[0] > 0.015 and eye[2] > J[j("head"), 2] + 0.07
        assert J[j("head"), 1] < eye[1] < J[j("head"), 1] + 0.08
        assert s * ear[0] > 0.075 and abs(ear[1] - J[j("head"), 1]) < 0.06
        big = "LBigToe" if s > 0 else "RBigToe"
        small = "LSmallToe" if s > 0 else "RSmallToe"
        heel = "LHeel" if s > 0 else "RHeel"
        side_name = "left" if s > 0 else "right"
        ankle, ball = J[j(f"{side_name}_ankle")], J[j(f"{side_name}_foot")]
        assert v[ids[heel], 2] < ankle[2] - 0.04 and v[ids[heel], 1] < ankle[1]
        for toe in (big, small):
            assert v[ids[toe], 2] > ball[2] + 0.05 and v[ids[toe], 1] < ankle[1]
        assert s * v[ids[big], 0] < s * v[ids[small], 0]  # big toe on the inside
        wrist = J[j(f"{side_name}_wrist")]
        for name in ("thumb", "index", "middle", "ring", "pinky"):
            tip = v[ids[f"{side}{name}"]]
            last = J[j(f"{side_name}_{name}3")]
            assert np.linalg.norm(tip - wrist) > np.linalg.norm(last - wrist) + 0.015
            nearest = int(np.argmin(np.linalg.norm(J - tip, axis=1)))
            assert nearest == j(f"{side_name}_{name}3"), name


def _landmark_points(v, f, faces_idx, bary):
    return np.einsum("...k,...kd->...d", bary, v[f[faces_idx]])


def test_face_landmarks_lie_on_the_face(arrays):
    v, f = arrays["v_template"], arrays["f"]
    J = arrays["J_regressor"] @ v
    head = J[SMPLX55.index("head")]
    np.testing.assert_allclose(arrays["lmk_bary_coords"].sum(-1), 1.0, atol=1e-9)
    assert arrays["lmk_bary_coords"].min() >= -1e-9
    static = _landmark_points(v, f, arrays["lmk_faces_idx"], arrays["lmk_bary_coords"])
    assert np.all(static[:, 2] > head[2] + 0.05)  # front of the head
    assert np.all(np.abs(static[:, 0]) < 0.07)
    assert np.all((static[:, 1] > head[1] - 0.08) & (static[:, 1] < head[1] + 0.1))
    dyn = _landmark_points(v, f, arrays["dynamic_lmk_faces_idx"], arrays["dynamic_lmk_bary_coords"])
    assert np.all(dyn[..., 1] > J[SMPLX55.index("neck"), 1] - 0.04)  # the chin, not the neck
    W = arrays["weights"]
    on_head = W[:, [SMPLX55.index("head"), SMPLX55.index("jaw")]].sum(axis=1)
    dyn_faces = f[arrays["dynamic_lmk_faces_idx"]]
    assert np.all(on_head[dyn_faces].max(axis=-1) > 0.5)
    assert np.all(np.linalg.norm(dyn - head, axis=-1) < 0.14)
    # Face-contour landmarks run from one side of the face to the other.
    assert np.all(dyn[:, 0, 0] < 0) and np.all(dyn[:, -1, 0] > 0)


# ---------------------------------------------------------------------------------------
# Shape and expression directions


def test_expression_moves_only_face_vertices(arrays, model_path):
    v = arrays["v_template"]
    J = arrays["J_regressor"] @ v
    expr = arrays["shapedirs"][:, :, 300:]
    moving = np.abs(expr).max(axis=(1, 2)) > 0
    assert moving.sum() > 100
    head = J[SMPLX55.index("head")]
    assert np.all(v[moving, 2] > head[2] + 0.03)
    assert np.all(v[moving, 1] > J[SMPLX55.index("neck"), 1] - 0.03)
    model = _smplx(model_path, dtype=torch.float64)
    rest = model().vertices[0].detach().numpy()
    out = model(expression=torch.full((1, 10), 2.0, dtype=torch.float64)).vertices[0].detach().numpy()
    changed = np.linalg.norm(out - rest, axis=1) > 1e-9
    assert changed.any() and not np.any(changed & ~moving)


def test_betas_change_height_and_girth_monotonically(arrays):
    v0, dirs = arrays["v_template"][:NB], arrays["shapedirs"][:NB].astype(np.float64)

    def height(v):
        return v[:, 1].max() - v[:, 1].min()

    def waist_width(v):
        band = np.abs(v[:, 1] - (sm.FLOOR_Y + 1.08)) < 0.02
        band &= np.abs(v[:, 0]) < 0.3
        return v[band, 0].max() - v[band, 0].min()

    hs = [height(v0 + s * dirs[:, :, 0]) for s in (-2, -1, 0, 1, 2)]
    gs = [waist_width(v0 + s * dirs[:, :, 1]) for s in (-2, -1, 0, 1, 2)]
    assert np.all(np.diff(hs) > 0.01) and hs[-1] - hs[0] > 0.15
    assert np.all(np.diff(gs) > 0.003)
    legs = [v0[:, 1].min() + s * 0 for s in (0,)]
    assert legs  # leg length (dir 2) lowers the soles
    assert (v0 + 2 * dirs[:, :, 2])[:, 1].min() < v0[:, 1].min() - 0.03
    arm = [(v0 + s * dirs[:, :, 3])[:, 0].max() for s in (-2, 0, 2)]
    assert arm[0] < arm[1] < arm[2]


def test_shape_directions_smooth(arrays):
    """Neighbouring vertices move alike: no direction tears the surface."""
    v, f = arrays["v_template"], arrays["f"]
    dirs = arrays["shapedirs"][:, :, :10].astype(np.float64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    length = np.linalg.norm(v[e[:, 0]] - v[e[:, 1]], axis=1)
    stretch = np.linalg.norm(dirs[e[:, 0]] - dirs[e[:, 1]], axis=1) / length[:, None]
    assert stretch.max() < 0.5  # relative edge change per unit beta


# ---------------------------------------------------------------------------------------
# Determinism


def test_same_seed_byte_identical_and_seed_changes_file(tmp_path, body, model_path):
    a = sm.write_synthetic_model(tmp_path / "a", seed=0, body=body)
    assert a.read_bytes() == model_path.read_bytes()
    b = sm.write_synthetic_model(tmp_path / "b", seed=1, body=body)
    assert b.read_bytes() != model_path.read_bytes()
    with np.load(model_path) as x, np.load(b) as y:
        np.testing.assert_array_equal(x["v_template"], y["v_template"])
        assert not np.array_equal(x["shapedirs"], y["shapedirs"])
    assert not list(tmp_path.glob("*/*.tmp"))


@pytest.mark.slow
def test_full_generation_is_deterministic(tmp_path, model_path):
    """Two complete generations (meshing included) give the same bytes."""
    path = sm.write_synthetic_model(tmp_path, seed=0)
    assert path.read_bytes() == model_path.read_bytes()
