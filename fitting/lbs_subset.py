"""Fast SMPL-X skinning of only what joint targets need.

While fitting to mocap joints the full 10475-vertex mesh is never needed: the 55 posed joints
follow from the kinematic chain with shape-dependent rest joints
``J(β) = J_regressor @ v_template + (J_regressor @ shapedirs) · β`` and only a handful of
landmark vertices (or the support of a user's regressor) need linear blend skinning.
The formulas are those of ``smplx.lbs.lbs`` (same pose blend shapes, same transform chain),
restricted to the rows that are read; ``tests/test_fitting.py`` checks them against smplx.

All functions broadcast over leading dims and work unbatched, so they compose with
``torch.func.vmap`` / ``jacfwd``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

NUM_JOINTS = 55
NUM_BODY_JOINTS = 21  # joints 1..21: the part of the pose fitted to mocap


def rodrigues(rotvec: torch.Tensor) -> torch.Tensor:
    """Rotation matrices from axis-angle vectors.

    Args:
        rotvec: (..., 3) axis-angle, radians.
    Returns:
        (..., 3, 3) rotation matrices. Smooth at zero (Taylor branch), so forward- and
        reverse-mode derivatives are finite everywhere.
    """
    t2 = (rotvec * rotvec).sum(-1, keepdim=True)
    small = t2 < 1e-6
    t = torch.sqrt(t2.clamp_min(1e-6))
    a = torch.where(small, 1.0 - t2 / 6.0, torch.sin(t) / t)  # sin t / t
    b = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / (t * t))  # (1-cos t)/t^2
    x, y, z = rotvec.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*rotvec.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


@dataclass(frozen=True)
class SubsetSkinner:
    """The rows of an SMPL-X model that joints and a vertex subset need (K vertices)."""

    j_template: torch.Tensor
    """(55, 3) rest joints of the mean shape, J_regressor @ v_template, metres."""
    j_shapedirs: torch.Tensor
    """(55, 3, NB) J_regressor @ shapedirs: rest-joint displacement per shape coefficient."""
    v_template: torch.Tensor
    """(K, 3) rest positions of the subset vertices, metres."""
    v_shapedirs: torch.Tensor
    """(K, 3, NB) shape directions of the subset vertices."""
    v_posedirs: torch.Tensor
    """(486, K*3) pose blend shapes of the subset vertices (rows: (R_j - I) entries, j=1..54)."""
    v_weights: torch.Tensor
    """(K, 55) skinning weights of the subset vertices."""
    pose_mean: torch.Tensor
    """(55, 3) added to the full pose (hand means when flat_hand_mean=False), radians."""
    vertex_ids: torch.Tensor
    """(K,) int64 indices of the subset vertices in the full mesh."""
    levels: tuple[tuple[torch.Tensor, torch.Tensor], ...]
    """Per tree depth: (joint indices at that depth, their parents' positions within the
    previous depth's joints)."""
    order_inverse: torch.Tensor
    """(55,) position of each joint in the depth-ordered concatenation."""
    parents: torch.Tensor
    """(55,) int64 kinematic parents (-1 for the root)."""

    @property
    def num_betas(self) -> int:
        return self.j_shapedirs.shape[-1]

    @property
    def dtype(self) -> torch.dtype:
        return self.j_template.dtype

    @property
    def device(self) -> torch.device:
        return self.j_template.device


def _depth_levels(parents: np.ndarray, device) -> tuple[tuple, torch.Tensor]:
    depth = np.zeros(len(parents), dtype=np.int64)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    order: list[int] = []
    levels = []
    for d in range(depth.max() + 1):
        idx = np.flatnonzero(depth == d)
        prev = levels[-1][0].tolist() if d > 0 else []
        par_pos = [prev.index(parents[j]) for j in idx] if d > 0 else []
        levels.append((torch.as_tensor(idx, device=device), torch.as_tensor(par_pos, dtype=torch.long, device=device)))
        order.extend(idx.tolist())
    inverse = np.argsort(np.asarray(order))
    return tuple(levels), torch.as_tensor(inverse, device=device)


def skinner_from_smplx(model, vertex_ids, *, dtype=None, device=None) -> SubsetSkinner:
    """Precompute a SubsetSkinner from a loaded ``smplx`` SMPL-X model.

    Args:
        model: an ``smplx.SMPLX`` module (any num_betas; expression stays at zero).
        vertex_ids: (K,) int indices of the vertices to skin (K may be 0).
        dtype, device: of the returned tensors (default: the model's).
    """
    dtype = dtype or model.shapedirs.dtype
    device = device or model.shapedirs.device
    f64 = dict(dtype=torch.float64, device=device)
    ids = torch.as_tensor(np.asarray(vertex_ids, dtype=np.int64), device=device)
    v_template = model.v_template.to(**f64)
    shapedirs = model.shapedirs.to(**f64)
    j_reg = model.J_regressor.to(**f64)
    posedirs = model.posedirs.to(**f64).reshape(-1, v_template.shape[0], 3)[:, ids].reshape(posedirs_rows(model), -1)
    parents = model.parents.detach().cpu().numpy().astype(np.int64)
    parents[0] = -1
    levels, inverse = _depth_levels(parents, device)
    pose_mean = model.pose_mean.to(**f64).reshape(-1, 3)
    return SubsetSkinner(
        j_template=(j_reg @ v_template).to(dtype),
        j_shapedirs=torch.einsum("jv,vcb->jcb", j_reg, shapedirs).to(dtype),
        v_template=v_template[ids].to(dtype),
        v_shapedirs=shapedirs[ids].to(dtype),
        v_posedirs=posedirs.to(dtype),
        v_weights=model.lbs_weights.to(**f64)[ids].to(dtype),
        pose_mean=pose_mean.to(dtype),
        vertex_ids=ids,
        levels=levels,
        order_inverse=inverse,
        parents=torch.as_tensor(parents, device=device),
    )


def posedirs_rows(model) -> int:
    return model.posedirs.shape[0]


def rest_joints(sk: SubsetSkinner, betas: torch.Tensor) -> torch.Tensor:
    """(..., 55, 3) rest-pose joints of shape ``betas`` (..., NB), metres."""
    return sk.j_template + torch.einsum("jcb,...b->...jc", sk.j_shapedirs, betas)


def rest_vertices(sk: SubsetSkinner, betas: torch.Tensor) -> torch.Tensor:
    """(..., K, 3) rest-pose subset vertices of shape ``betas`` (..., NB), metres."""
    return sk.v_template + torch.einsum("kcb,...b->...kc", sk.v_shapedirs, betas)


def world_transforms(sk: SubsetSkinner, rot: torch.Tensor, joints_rest: torch.Tensor):
    """Forward kinematics: world rotations and posed joint positions.

    Args:
        rot: (..., 55, 3, 3) local joint rotations (pose mean already included).
        joints_rest: (..., 55, 3) rest joints, metres.
    Returns:
        (R (..., 55, 3, 3) world rotations, t (..., 55, 3) posed joints, root at its rest place).
    """
    parents = sk.parents.clamp_min(0)
    rel = joints_rest - joints_rest[..., parents, :] * (sk.parents >= 0)[:, None].to(joints_rest.dtype)
    rel = rel.expand(*rot.shape[:-3], *rel.shape[-2:])
    # homogeneous local transforms [R | rel]: one matmul per tree depth composes both parts
    local = torch.cat([rot, rel[..., None]], -1)  # (..., 55, 3, 4)
    bottom = torch.zeros_like(local[..., :1, :])
    bottom[..., 3] = 1.0
    local = torch.cat([local, bottom], -2)  # (..., 55, 4, 4)
    done = []
    for d, (idx, par_pos) in enumerate(sk.levels):
        loc = local[..., idx, :, :]
        done.append(loc if d == 0 else done[-1][..., par_pos, :, :] @ loc)
    world = torch.cat(done, -3)[..., sk.order_inverse, :, :]
    return world[..., :3, :3], world[..., :3, 3]


def pose_subset(
    sk: SubsetSkinner,
    full_pose: torch.Tensor,
    transl: torch.Tensor,
    *,
    betas: torch.Tensor | None = None,
    joints_rest: torch.Tensor | None = None,
    verts_rest: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Posed joints and subset vertices, as ``smplx.SMPLX.forward`` computes them.

    Args:
        full_pose: (..., 55, 3) axis-angle per joint *without* the model's pose mean
            (global_orient, body, jaw, eyes, hands — the smplx forward arguments), radians.
        transl: (..., 3) world translation, metres.
        betas: (..., NB) shape; or pass precomputed ``joints_rest`` (..., 55, 3) and
            ``verts_rest`` (..., K, 3) (from ``rest_joints``/``rest_vertices``).
    Returns:
        (joints (..., 55, 3), vertices (..., K, 3)) in the world frame, metres.
    """
    if joints_rest is None:
        joints_rest = rest_joints(sk, betas)
        verts_rest = rest_vertices(sk, betas)
    rot = rodrigues(full_pose + sk.pose_mean)
    r_world, joints = world_transforms(sk, rot, joints_rest)
    if sk.v_template.shape[0] == 0:
        return joints + transl[..., None, :], joints[..., :0, :]
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    pose_feature = (rot[..., 1:, :, :] - eye).flatten(-3)
    v_posed = verts_rest + (pose_feature @ sk.v_posedirs).unflatten(-1, (-1, 3))
    # x = sum_k w_k (R_k (v - J_k) + t_k): blend the rigid transforms of the joints.
    r_blend = torch.einsum("kj,...jab->...kab", sk.v_weights, r_world)
    offset = torch.einsum("kj,...jab,...jb->...ka", sk.v_weights, r_world, joints_rest)
    t_blend = torch.einsum("kj,...ja->...ka", sk.v_weights, joints)
    verts = (r_blend @ v_posed[..., None])[..., 0] - offset + t_blend
    return joints + transl[..., None, :], verts + transl[..., None, :]


def right_jacobian(rotvec: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) right Jacobian of SO(3): R(θ + dθ) ≈ R(θ) exp([J_r(θ) dθ]×) for θ (..., 3)."""
    t2 = (rotvec * rotvec).sum(-1, keepdim=True)
    small = t2 < 1e-6
    t = torch.sqrt(t2.clamp_min(1e-6))
    a = torch.where(small, 0.5 - t2 / 24.0, (1.0 - torch.cos(t)) / (t * t))
    b = torch.where(small, 1.0 / 6.0 - t2 / 120.0, (t - torch.sin(t)) / (t * t * t))
    k = skew(rotvec)
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye - a[..., None] * k + b[..., None] * (k @ k)


def skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) cross-product matrix [v]× of v (..., 3)."""
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).unflatten(-1, (3, 3))


@functools.lru_cache(maxsize=16)
def _ancestor_masks_np(parents: tuple[int, ...], n_free: int) -> tuple[np.ndarray, np.ndarray]:
    strict = np.zeros((len(parents), n_free))
    for k in range(len(parents)):
        a = parents[k]
        while a >= 0:
            if a < n_free:
                strict[k, a] = 1.0
            a = parents[a]
    incl = strict.copy()
    incl[np.arange(n_free), np.arange(n_free)] = 1.0
    return strict, incl


def ancestor_masks(sk: SubsetSkinner, n_free: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(strict (55, n_free), inclusive (55, n_free)) masks: is joint j an ancestor of joint k."""
    strict, incl = _ancestor_masks_np(tuple(sk.parents.tolist()), n_free)
    kw = dict(dtype=sk.dtype, device=sk.device)
    return torch.as_tensor(strict, **kw), torch.as_tensor(incl, **kw)


def pose_subset_with_jacobian(
    sk: SubsetSkinner,
    full_pose: torch.Tensor,
    transl: torch.Tensor,
    joints_rest: torch.Tensor,
    verts_rest: torch.Tensor,
    n_free: int = 1 + NUM_BODY_JOINTS,
):
    """``pose_subset`` plus exact derivatives w.r.t. the axis-angle of joints 0..n_free-1.

    Args:
        full_pose: (B, 55, 3) axis-angle without the pose mean, radians.
        transl: (B, 3) metres.
        joints_rest, verts_rest: (55, 3) and (K, 3) rest joints/vertices (fixed shape).
    Returns:
        joints (B, 55, 3), verts (B, K, 3), d_joints (B, 55, 3, n_free, 3),
        d_verts (B, K, 3, n_free, 3): d x[b, k, c] / d pose[b, j, i] at [b, k, c, j, i].
        Rotating joint j by δ moves every point rigidly attached below it by
        (ω_j δ) × (x - x_j), ω_j = G_j J_r(θ_j); pose blend shapes are differentiated too.
    """
    pose = full_pose + sk.pose_mean
    rot = rodrigues(pose)
    r_world, joints = world_transforms(sk, rot, joints_rest)
    x = joints + transl[..., None, :]
    jr_free = right_jacobian(pose[:, :n_free])  # (B, n_free, 3, 3)
    omega = r_world[:, :n_free] @ jr_free
    axes = omega.transpose(-1, -2)  # (B, n_free, 3 i, 3 c): axis of parameter i
    strict, incl = ancestor_masks(sk, n_free)
    lever = (x[:, :, None, :] - x[:, None, :n_free, :]) * strict[None, :, :, None]  # (B, 55, n_free, 3)
    dj = torch.linalg.cross(axes[:, None], lever[:, :, :, None, :].expand(-1, -1, -1, 3, -1))
    dj = dj.permute(0, 1, 4, 2, 3)  # (B, 55, 3c, n_free, 3i)
    k = sk.v_template.shape[0]
    if k == 0:
        return x, x[:, :0], dj, x.new_zeros((x.shape[0], 0, 3, n_free, 3))
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    pose_feature = (rot[:, 1:] - eye).flatten(-3)
    v_posed = verts_rest + (pose_feature @ sk.v_posedirs).unflatten(-1, (-1, 3))  # (B, K, 3)
    # every joint's rigid image of every vertex, then blended
    y = torch.einsum("bjac,bkjc->bkja", r_world, v_posed[:, :, None, :] - joints_rest) + x[:, None]  # (B,K,55,3)
    verts = torch.einsum("kj,bkja->bka", sk.v_weights, y)
    wa = sk.v_weights[:, :, None] * incl[None]  # (K, 55, n_free)
    lever_v = torch.einsum("kjf,bkja->bkfa", wa, y) - wa.sum(1)[None, :, :, None] * x[:, None, :n_free, :]
    dv = torch.linalg.cross(axes[:, None], lever_v[:, :, :, None, :].expand(-1, -1, -1, 3, -1))
    dv = dv.permute(0, 1, 4, 2, 3).clone()  # (B, K, 3c, n_free, 3i)
    # pose blend shapes: d(R_j - I)/dθ_j[i] = R_j [J_r e_i]×, for body joints 1..n_free-1
    d_rot = rot[:, 1:n_free, None] @ skew(jr_free[:, 1:].transpose(-1, -2))  # (B, n-1, 3i, 3, 3)
    posedirs = sk.v_posedirs.unflatten(0, (-1, 9))[: n_free - 1]  # (n-1, 9, K*3)
    d_vposed = torch.einsum("bjim,jmn->bjin", d_rot.flatten(-2), posedirs).unflatten(-1, (k, 3))
    r_blend = torch.einsum("kj,bjac->bkac", sk.v_weights, r_world)
    dv[:, :, :, 1:, :] += torch.einsum("bkac,bjikc->bkaji", r_blend, d_vposed)
    return x, verts, dj, dv
