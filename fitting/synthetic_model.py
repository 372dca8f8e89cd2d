"""A synthetic body model in the exact SMPL-X v1.1 file format (the embedded default).

Nothing licensed is used: the body is designed here from a few dozen measurements.

Construction
------------
1. Skeleton: the 55 SMPL-X joints of an adult of about 1.70 m in the SMPL-X rest pose
   (T-pose with arms out, palms down, y up, facing +z, the subject's left at +x).
2. Implicit surface: a smooth union (polynomial smooth-min) of round cones and ellipsoids,
   one or more per bone (torso, limbs, head, nose, ears, feet with heels and toes, hands
   with five fingers of three segments each). Each primitive belongs to one joint.
3. Marching cubes (scikit-image) on a rectilinear grid (7 mm, 3.5 mm in the slabs holding
   the hands), evaluated only inside the primitives' bounding boxes; the largest component
   is a closed genus-0 surface.
4. Decimation by half-edge collapses in vectorised rounds (numpy): each round takes the
   shortest edges relative to a size field (hands and face finer than the trunk), drops
   collapses that break the link condition or flip or degrade a triangle, keeps a set with
   disjoint 1-rings and collapses it; down to exactly ``NUM_BODY_VERTICES`` vertices. Then
   a few rounds of tangential smoothing projected back onto the implicit surface.
5. Topology: SMPL-X has F = 20908 faces and V = 10475 vertices. A closed genus-0 manifold has
   F = 2V - 4, so the body uses V = 10456 vertices (F = 20908 exactly) and the remaining
   19 vertices (indices 10456..10474) are unreferenced spares that duplicate body vertices
   (same position, weights, shape and expression directions, no regressor weight). The
   mesh of referenced vertices is watertight, edge-manifold and free of self-intersection.
6. The vertex order is permuted so that the indices hard-coded by smplx
   (``vertex_ids["smplx"]``: nose, eyes, ears, toes, heels, fingertips) fall on the matching
   body parts; the 51 static and 79 x 17 dynamic face landmarks are ray-cast onto the face.
7. Skinning weights from smooth primitive membership (each vertex bound only to the joints
   of primitives within a blend band of its nearest one); a joint regressor whose rows are
   affine combinations of vertices around each joint, reproducing the joints exactly;
   shape directions 0..9 (height, girth, leg length, arm length, torso length, shoulder
   width, hip width, belly, head size, arm girth) built as smooth injective deformations,
   10..299 seed-dependent local girth variations; 100 expression directions with support on
   the face only; zero pose correctives; an orthonormal hand basis and a mild mean curl.

The seed changes only the higher shape directions (10..299), the extra expression
directions (6..99) and the order of the hand basis beyond its first row; the geometry,
joints and first ten shape directions are the same for every seed. The file is a zip
written with fixed timestamps, so the same seed gives a byte-identical file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from common.zipfiles import write_npz
from fitting.synthetic_body.design import (  # noqa: F401  (the model's public facts)
    FLOOR_Y,
    LANDMARK_VERTEX_IDS,
    MODEL_FILENAME,
    NUM_BODY_VERTICES,
    NUM_FACES,
    NUM_JOINTS,
    NUM_POSE_BASIS,
    NUM_SPARE_VERTICES,
    NUM_VERTICES,
    SMPLX_PARENTS,
    _primitives,
    design_joints,
    rest_joints,
)
from fitting.synthetic_body.mesh import build_body_mesh  # noqa: F401  (the model's public facts)
from fitting.synthetic_body.rig import (  # noqa: F401  (the model's public facts)
    _landmark_permutation,
    _landmark_targets,
    expression_directions,
    face_landmarks,
    hand_mean_and_components,
    joint_regressor,
    shape_directions,
    skinning_weights,
)

# --------------------------------------------------------------------------------------
# Assembly and file


def build_model_arrays(seed: int = 0, body: tuple[np.ndarray, np.ndarray] | None = None
                       ) -> dict[str, np.ndarray]:
    """Every array of the SMPL-X v1.1 file, keyed as smplx reads them (model frame).

    ``body``: the output of ``build_body_mesh()`` when already at hand (it does not depend
    on the seed and is the slow part).
    """
    rng = np.random.default_rng([seed, 0x5A17])
    prims = _primitives()
    joints = design_joints()
    verts, faces = build_body_mesh() if body is None else body
    weights, member = skinning_weights(prims, verts)
    chosen = _landmark_targets(joints, verts, weights)
    # Spares: duplicates of the first body vertices that are not landmarks.
    landmark_old = set(chosen.values())
    spares = [i for i in range(len(verts)) if i not in landmark_old][:NUM_SPARE_VERTICES]
    src = np.concatenate([np.arange(len(verts)), spares])  # all vertices -> body source vertex
    perm = _landmark_permutation(chosen, NUM_BODY_VERTICES)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    order = np.concatenate([perm, np.arange(NUM_BODY_VERTICES, NUM_VERTICES)])
    src = src[order]
    v_all = verts[src]
    faces_new = inv[faces]
    w_all = weights[src]
    member_all = member[src]
    regressor = joint_regressor(v_all[:NUM_BODY_VERTICES], w_all[:NUM_BODY_VERTICES], joints)
    regressor = np.concatenate([regressor, np.zeros((NUM_JOINTS, NUM_SPARE_VERTICES))], axis=1)
    shapedirs = shape_directions(prims, v_all, member_all, w_all, rng)
    exprdirs = expression_directions(v_all, rng)
    lmk_faces, lmk_bary, dyn_faces, dyn_bary = face_landmarks(v_all, faces_new)
    hml, hmr, hcl, hcr = hand_mean_and_components(rng)
    offset = np.array([0.0, FLOOR_Y, 0.0])
    kintree = np.stack([SMPLX_PARENTS, np.arange(NUM_JOINTS)]).astype(np.int64)
    return {
        "v_template": (v_all + offset).astype(np.float64),
        "f": faces_new.astype(np.int64),
        "shapedirs": np.concatenate([shapedirs, exprdirs], axis=2).astype(np.float32),
        "posedirs": np.zeros((NUM_VERTICES, 3, NUM_POSE_BASIS), dtype=np.float32),
        "J_regressor": regressor.astype(np.float64),
        "weights": w_all.astype(np.float64),
        "kintree_table": kintree,
        "hands_componentsl": hcl.astype(np.float64),
        "hands_componentsr": hcr.astype(np.float64),
        "hands_meanl": hml.astype(np.float64),
        "hands_meanr": hmr.astype(np.float64),
        "lmk_faces_idx": lmk_faces,
        "lmk_bary_coords": lmk_bary.astype(np.float64),
        "dynamic_lmk_faces_idx": dyn_faces,
        "dynamic_lmk_bary_coords": dyn_bary.astype(np.float64),
    }




def write_synthetic_model(out_dir: str | Path, seed: int = 0,
                          body: tuple[np.ndarray, np.ndarray] | None = None) -> Path:
    """Generate the synthetic model and write ``out_dir/SMPLX_NEUTRAL.npz``; returns its path.

    smplx.create(path) loads it; smplx.create(folder) expects ``folder/smplx/SMPLX_NEUTRAL.npz``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_FILENAME
    arrays = build_model_arrays(seed, body)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write_npz(fh, arrays, compress=True)
    os.replace(tmp, path)
    return path

