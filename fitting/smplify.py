"""Batched SMPLify-X-style fitting of SMPL-X to mocap joints (same code on CPU and CUDA).

Why one module of ~850 lines: the Fitter's schedule below (rigid start, keyframes, sweeps,
restarts, limits, smoothing, skeleton offsets) reads top to bottom in one place; the generic
pieces live elsewhere (``fitting.lm`` the solver, ``fitting.rotations``, ``fitting.losses``,
``fitting.priors``, ``fitting.joint_limits``, ``fitting.lbs_subset``).

Per subject: betas (shape) fitted jointly with the poses of frames drawn from all of the
subject's sequences. Per sequence: every mocap frame gets its own pose
(global_orient, body_pose, transl = 69 parameters), hands, face and expression stay at
their mean. Each frame is a tiny non-linear least-squares problem, solved for many frames
at once with Levenberg–Marquardt (per-frame damping, closed-form Jacobians: the kinematic
chain's in fitting.lbs_subset, the limit hinges' in fitting.joint_limits). Only the 55 joints
and the few vertices the targets read are skinned (fitting.lbs_subset).

Energy per frame (residual form; LM accepts a step only if the true energy drops):
  data      Geman–McClure on predicted vs mocap joints, in units of DATA_UNIT_M, linearised
            by IRLS (weights frozen within a step);
  pose      Gaussian on each body joint's swing and twist, in units of its range of motion
            (or a user's GMM) — little twist where twist is unobservable, and motion the
            joints cannot attribute goes to the joints that move most (not collars, spine);
  limits    hinges on each body joint's swing and twist beyond its range of motion, about
            the mean shape's bone axes (fitting.joint_limits), in the wide phase of a solve;
            every other step is projected into the limits, where the hinges are zero;
  temporal  body_pose and transl minus the mean of the neighbouring frames (held fixed
            within one LM round, refreshed between rounds).

Schedule for a sequence: a rigid (Kabsch) start from the torso, LM on keyframes every
``keyframe_step`` frames (keyframes stuck in a bad minimum restart from the nearest good
one); the frames between keyframes are fitted in one batch, each started from its two
keyframes' poses interpolated (the bridge); frames still stuck are fitted in a forward sweep,
each warm-started from its solved predecessor, then a backward sweep from their successor;
frames still clearly worse than the median (keyframes included)
restart from each neighbour's pose; a last LM pass on all frames adds temporal smoothness.
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.func import jacfwd

from common.device import resolve_device
from fitting.correspondence import (
    bone_frame_index,
    correspondence_vertex_ids,
    correspondence_weights,
)
from fitting.errors import BodyModelError
from fitting.joint_limits import (
    bone_axes,
    limit_residual,
    limit_residual_jacobian,
    project_to_limits,
    range_normalised_axes,
)
from fitting.joint_sets import H36M17_FROM_H36M32, H36M32
from fitting.lbs_subset import (
    NUM_BODY_JOINTS,
    NUM_JOINTS,
    SubsetSkinner,
    pose_subset,
    pose_subset_with_jacobian,
    rest_joints,
    rest_vertices,
    rodrigues,
    skinner_from_smplx,
    world_transforms,
)
from fitting.lm import LMResult, lm_batched
from fitting.losses import gmof_energy, neighbour_mean, per_joint_error_mm
from fitting.priors import GMMPrior
from fitting.rotations import interpolate_rotvec, kabsch, matrix_to_rotvec, principal_rotvec

log = logging.getLogger(__name__)

NUM_POSE_PARAMS = 3 * (1 + NUM_BODY_JOINTS) + 3
"""Parameters per frame: global_orient (3), body_pose (63), transl (3)."""
DATA_UNIT_M = 0.01
"""Data residuals are expressed in centimetres so that prior weights read as 'cm^2 per rad^2'."""
TORSO_H36M32 = ("Hips", "RightUpLeg", "LeftUpLeg", "Spine", "Spine1", "Neck", "LeftArm", "RightArm")
"""Joints used for the rigid start (little affected by the body pose near the rest pose)."""


@dataclass(frozen=True)
class FitConfig:
    """Settings of the fitter."""

    device: str = "auto"
    """"auto" (CUDA when available), "cuda" or "cpu"."""
    dtype: str = "float32"
    """Floating type of the optimisation ("float32" or "float64")."""
    data_sigma_m: float = 0.05
    """Geman–McClure scale of the joint loss, metres (phase two of each solve)."""
    pose_prior_weight: float = 9e-2
    """Weight of the body-pose prior (data in cm): the squared swing and twist of every body
    joint, each in units of that axis's half range of motion
    (fitting.joint_limits.range_normalised_axes). Where the joints cannot tell which joint
    turns (twist shared by collar and shoulder, bending shared by the spine joints), the
    motion goes to the joints with the larger range, not spread evenly over all."""
    gmm_prior_weight: float = 1e-2
    """Weight of a user's GMM prior (replaces the L2 prior when given)."""
    angle_limit_weight: float = 1e4
    """Weight of the anatomical limit hinges (fitting.joint_limits: swing and twist of every
    body joint beyond its range, radians; 1e4 makes 1 deg beyond cost as much as 1.7 cm)."""
    skeleton_rounds: int = 1
    """Rounds of (mocap-skeleton offsets, then the shape against the mocap minus them) at the
    end of the shape fit (the last round estimates offsets only); 0: no offsets."""
    offset_rounds: int = 2
    """Rounds of estimating the mocap skeleton's per-joint offsets in the bone frames (shape
    fit) and of refitting poses to the mocap minus them (shape frames and sequences); 0: off."""
    limit_slack_deg: float = 30.0
    """How far beyond the limits the first (wide-loss) phase of a solve may go, degrees
    (only the hinge holds it there); every other step is projected into the limits."""
    max_rotation_step_rad: float = 0.5
    """Trust region of one LM step: the change of each joint's rotation vector is scaled
    down to at most this norm (steps cannot run away along directions the joints do not see)."""
    rotation_damping_floor: float = 100.0
    """Lower bound of the LM damping scale of rotation parameters (cm^2 per rad^2, i.e. a
    10 cm lever): unobserved rotations are damped like observed ones."""
    temporal_weight: float = 1e-1
    """Weight of the smoothness term on body_pose (rad) and transl (scaled to cm)."""
    beta_prior_weight: float = 1e-5
    """Weight of the L2 prior on betas per frame of the shape fit (small: on exact data the
    shape fit reaches the exact solution)."""
    shape_evidence_frames: float = 1.0
    """How many independent frames' worth of evidence about the shape the shape fit's
    frames count as, against the N(0, 1) beta prior (see Fitter._shape_prior_weight)."""
    beta_soft_bound: float = 2.5
    """|beta| beyond this is penalised by a hinge of weight ``beta_bound_weight`` per frame."""
    beta_bound_weight: float = 1e2
    """Weight of the beta hinge (per frame, cm^2 per unit^2): a shape that a skeleton
    mismatch would drive off stays near the plausible range."""
    beta_bound: float = 3.0
    """Hard bound: betas are clamped to [-beta_bound, beta_bound] after every step."""
    keyframe_step: int = 16
    """Keyframe spacing: the frames between keyframes are fitted in one batch from their
    keyframes' poses interpolated (``bridge_iters``), stuck ones again in sweeps."""
    keyframe_iters: int = 24
    """LM iterations on keyframes from the rigid start."""
    bridge_iters: int = 10
    """LM iterations of the frames between keyframes, all in one batch, each started from
    its keyframes' poses interpolated."""
    sweep_iters: int = 5
    """LM iterations per frame in a warm-started sweep (frames still stuck after the bridge)."""
    frame_iters: int = 4
    """LM iterations of the final all-frames pass with smoothness (split over rounds)."""
    temporal_rounds: int = 2
    """Rounds over which the smoothness neighbours are refreshed."""
    shape_frames: int = 96
    """Frames drawn from all of a subject's sequences for the shape fit."""
    shape_start_iters: int = 120
    """LM iterations of the shape frames' poses from the rigid start (no warm start there,
    and a shared shape must not absorb poses that have not converged)."""
    shape_pose_iters: int = 20
    """LM iterations of the shape frames' poses alone after each joint round, and of each
    skeleton-offset round."""
    shape_iters: int = 25
    """Joint (betas + poses) LM iterations per round of the shape fit."""
    shape_rounds: int = 2
    """Rounds of (joint betas + poses LM, then per-frame pose LM) in the shape fit."""
    retry_mm: float = 3.0
    """A frame counts as stuck when its MPJPE exceeds max(retry_mm, 2 x the median
    frame's): stuck keyframes restart from good ones, stuck frames from their neighbours."""
    outlier_factor: float = 1.5
    """Frames with MPJPE above outlier_factor x the sequence median retry from their
    neighbours' poses after the sweeps."""
    chunk_frames: int = 0
    """Frames per LM batch (0: 4096 on CUDA, 512 on CPU)."""
    cpu_threads: int = 1
    """torch intra-op threads while fitting on CPU (0: leave torch's setting). The per-frame
    operations are small, so extra threads mostly spin; parallelism comes from dask units."""
    tol: float = 3e-4
    """A frame has converged (and LM leaves it) when a step lowers its energy (cm^2 units) by
    less than tol x (energy + 1), or a step is rejected where the undamped Gauss-Newton model
    promises less than that (fitting.lm). Small: the prior's shallow valleys (which joint
    twists) are descended in many small steps (1e-4 left 60 % of the frames of a fast
    sequence 'unconverged' at 0.05 mm MPJPE; 3e-4 gave the same or better surface error on
    the demo releases, exact, mismatched and noisy)."""


# ----------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class JointTargets:
    """How predicted mocap joints are read off the posed body, and which mocap rows they fit."""

    skinner: SubsetSkinner
    weights_joints: torch.Tensor
    """(M, 55) weights on posed skeleton joints."""
    weights_vertices: torch.Tensor
    """(M, K) weights on the skinned vertex subset."""
    target_rows: torch.Tensor
    """(M,) rows of the (T, 32, 3) mocap that the M predictions fit."""
    eval_rows: torch.Tensor
    """(17,) rows of the M predictions that form the h36m17 evaluation set."""
    torso_rows: torch.Tensor
    """Rows of the M predictions used for the rigid start."""
    frame_joints: torch.Tensor
    """(M,) smplx55 joint whose world rotation is each prediction's bone frame
    (fitting.correspondence.H36M32_BONE_FRAME): where a mocap skeleton's offsets live."""

    def predict(self, joints55: torch.Tensor, verts: torch.Tensor) -> torch.Tensor:
        """(..., M, 3) predicted mocap joints from joints55 (..., 55, 3) and verts (..., K, 3)."""
        return self.weights_joints @ joints55 + self.weights_vertices @ verts


def named_targets(model, *, dtype, device) -> JointTargets:
    """The named H36M32 <-> SMPL-X correspondence (fitting.correspondence)."""
    w_j, w_v = correspondence_weights()
    sk = skinner_from_smplx(model, correspondence_vertex_ids(), dtype=dtype, device=device)
    torso = [H36M32.index(n) for n in TORSO_H36M32]
    return JointTargets(
        sk, torch.as_tensor(w_j, dtype=dtype, device=device), torch.as_tensor(w_v, dtype=dtype, device=device),
        torch.arange(32, device=device), torch.as_tensor(H36M17_FROM_H36M32, device=device),
        torch.as_tensor(torso, device=device), torch.as_tensor(bone_frame_index(), device=device))


def load_joint_regressor(path: str | Path, num_vertices: int) -> np.ndarray:
    """A user's joint regressor (17 x V or 32 x V, .npy or .npz), float64.

    Raises BodyModelError naming the file when it is missing, unreadable or of a bad shape.
    """
    path = Path(path)
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            keys = [k for k in ("J_regressor", "regressor", "joint_regressor") if k in data.files] or data.files
            if not keys:
                raise ValueError("empty archive")
            data = data[keys[0]]
        reg = np.asarray(data, dtype=np.float64)
    except FileNotFoundError:
        raise BodyModelError(f"{path}: joint regressor file not found") from None
    except Exception as e:
        raise BodyModelError(f"{path}: cannot read a joint regressor (.npy/.npz): {e}") from None
    if reg.ndim != 2 or reg.shape[0] not in (17, 32) or reg.shape[1] != num_vertices:
        raise BodyModelError(f"{path}: joint regressor has shape {reg.shape}, expected (17, {num_vertices}) "
                             f"or (32, {num_vertices})")
    if not np.all(np.isfinite(reg)):
        raise BodyModelError(f"{path}: joint regressor contains non-finite values")
    return reg


def regressor_targets(model, regressor: np.ndarray, *, dtype, device) -> JointTargets:
    """Targets from a user's (17|32, V) regressor applied to posed vertices."""
    support = np.flatnonzero(np.abs(regressor).sum(0) > 0)
    sk = skinner_from_smplx(model, support, dtype=dtype, device=device)
    m = regressor.shape[0]
    if m == 17:
        rows, eval_rows = H36M17_FROM_H36M32, np.arange(17)
        torso = [0, 1, 4, 7, 8, 11, 14]  # pelvis, hips, spine, thorax, shoulders
    else:
        rows, eval_rows = np.arange(32), H36M17_FROM_H36M32
        torso = [H36M32.index(n) for n in TORSO_H36M32]
    return JointTargets(
        sk, torch.zeros((m, NUM_JOINTS), dtype=dtype, device=device),
        torch.as_tensor(regressor[:, support], dtype=dtype, device=device),
        torch.as_tensor(rows, device=device), torch.as_tensor(eval_rows, device=device),
        torch.as_tensor(torso, device=device), torch.as_tensor(bone_frame_index()[rows], device=device))


# ----------------------------------------------------------------------------- fitter


@dataclass
class SequenceFit:
    """Per-frame SMPL-X parameters and metrics of one sequence (numpy, world frame, metres)."""

    global_orient: np.ndarray
    """(T, 3) radians."""
    body_pose: np.ndarray
    """(T, 63) radians."""
    transl: np.ndarray
    """(T, 3) metres."""
    mpjpe_mm: np.ndarray
    """(T,) mean error over the h36m17 joints, mm."""
    joint_err_mm: np.ndarray
    """(T, 17) per-joint error, mm."""
    converged: np.ndarray
    """(T,) bool."""
    energies: dict = field(default_factory=dict)
    """name -> (T,) energy per frame (data, pose_prior, angle_limits, temporal)."""


class Fitter:
    """SMPL-X fitter for one body model, one correspondence and one config."""

    def __init__(self, model, config: FitConfig = FitConfig(), *, regressor: np.ndarray | None = None,
                 gmm: GMMPrior | None = None):
        """
        Args:
            model: an ``smplx.SMPLX`` module with num_betas=10 (its device/dtype do not matter).
            regressor: optional (17|32, V) user regressor replacing the named correspondence.
            gmm: optional GMM pose prior replacing the L2 prior.
        """
        self.config = config
        self.device = resolve_device(config.device)
        self.dtype = {"float32": torch.float32, "float64": torch.float64}[config.dtype]
        kw = dict(dtype=self.dtype, device=self.device)
        self.targets = (named_targets(model, **kw) if regressor is None
                        else regressor_targets(model, regressor, **kw))
        self.skinner = self.targets.skinner
        self.num_betas = self.skinner.num_betas
        self.gmm = gmm.to(self.dtype, self.device) if gmm is not None else None
        self.chunk = config.chunk_frames or (4096 if self.device.type == "cuda" else 512)
        self.bone_axes = bone_axes(self.skinner.j_template)
        """(21, 3) rest bone axes of the model's mean shape: the frame of the pose prior and
        of the joint limits, the same for every subject (the synthetic motions and the audit
        use it too; a subject's own axes differ from it by at most ~1°)."""
        self.prior_map = math.sqrt(config.pose_prior_weight) * range_normalised_axes(self.bone_axes)
        """(63, 63) the pose prior's residual map: prior residual = prior_map @ body_pose."""
        self.prior_jacobian = torch.nn.functional.pad(self.prior_map, (3, 3))
        """(63, 69) d prior residual / d params of the L2 prior (constant)."""
        self.smooth_jacobian = torch.diag_embed(self._smooth_vector(torch.ones(NUM_POSE_PARAMS, **kw)))
        self.smooth_jacobian = torch.cat([self.smooth_jacobian.new_zeros((66, 3)), self.smooth_jacobian], 1)
        """(66, 69) d smoothness residual / d params at unit weight (constant)."""
        floor = torch.full((NUM_POSE_PARAMS,), config.rotation_damping_floor, **kw)
        floor[66:] = 1e-6
        self.damping_floor = floor

    # -- residuals -------------------------------------------------------------------

    def _full_pose(self, p: torch.Tensor) -> torch.Tensor:
        body = p[..., : 3 * (1 + NUM_BODY_JOINTS)].unflatten(-1, (-1, 3))
        rest = body.new_zeros((*body.shape[:-2], NUM_JOINTS - 1 - NUM_BODY_JOINTS, 3))
        return torch.cat([body, rest], -2)

    def _predict(self, p, joints_rest, verts_rest):
        joints, verts = pose_subset(self.skinner, self._full_pose(p), p[..., 66:69],
                                    joints_rest=joints_rest, verts_rest=verts_rest)
        return self.targets.predict(joints, verts)

    def _prior_residual(self, body_pose):
        if self.gmm is not None:
            return math.sqrt(self.config.gmm_prior_weight) * self.gmm.residual(body_pose)
        return body_pose @ self.prior_map.T

    def retract(self, p: torch.Tensor, step: torch.Tensor, cap: bool = True, slack_rad: float = 0.0) -> torch.Tensor:
        """Trial parameters (B, 69) of an LM step (B, 69) from p: each joint's rotation step
        limited to ``max_rotation_step_rad`` (unless not ``cap``), the rotation vectors
        re-expressed with norm <= π, the body joints projected into their limits (widened by
        slack_rad)."""
        rot = step[:, :66].unflatten(-1, (22, 3))
        if cap:
            norm = torch.linalg.norm(rot, dim=-1, keepdim=True)
            m = self.config.max_rotation_step_rad
            rot = rot * torch.where(norm > m, m / norm.clamp_min(1e-30), torch.ones_like(norm))
        new_rot = principal_rotvec(p[:, :66].unflatten(-1, (22, 3)) + rot)
        body = project_to_limits(new_rot[:, 1:], self.bone_axes, slack_rad)
        return torch.cat([new_rot[:, 0], body.flatten(1), p[:, 66:] + step[:, 66:]], 1)

    def residuals(self, p, target, joints_rest, verts_rest, nbr, w_time, sigma, jacobian: bool, hinges: bool = True):
        """Stacked residuals of frames, optionally with their exact Jacobian.

        Args:
            p: (B, 69) [global_orient, body_pose, transl]; target: (B, M, 3) metres;
            joints_rest (55, 3), verts_rest (K, 3): the subject's rest shape;
            nbr: (B, 69) neighbour means for smoothness; w_time: (B,) its weight;
            sigma: Geman–McClure scale, metres;
            hinges: with the joint-limit hinges; without them where every trial is projected
                into the limits (``retract`` with no slack), so that they are zero anyway.
        Returns:
            r (B, R) and J (B, R, 69) (None unless jacobian), R = 3M + 63 + 42 + 66
            (42 fewer without hinges).
        """
        full_pose, transl = self._full_pose(p), p[:, 66:69]
        if jacobian:
            joints, verts, dj, dv = pose_subset_with_jacobian(self.skinner, full_pose, transl, joints_rest, verts_rest)
        else:
            joints, verts = pose_subset(self.skinner, full_pose, transl, joints_rest=joints_rest, verts_rest=verts_rest)
        tg = self.targets
        err = tg.predict(joints, verts) - target
        # IRLS: residual sqrt(rho'(|e|^2)) e with the weight frozen in the Jacobian; the
        # true Geman–McClure energy decides whether a step is accepted.
        sq = (err * err).sum(-1, keepdim=True)
        irls = sigma * sigma / (sigma * sigma + sq)
        data = irls * err / DATA_UNIT_M
        body = p[:, 3:66]
        prior = self._prior_residual(body)
        w_lim = math.sqrt(self.config.angle_limit_weight)
        if not hinges:
            limits, j_lim_body = body[:, :0], None
        elif jacobian:
            limits, j_lim_body = limit_residual_jacobian(body, self.bone_axes)
        else:
            limits, j_lim_body = limit_residual(body, self.bone_axes), None
        limits = w_lim * limits
        sq_wt = torch.sqrt(w_time)[:, None]
        smooth = sq_wt * self._smooth_vector(p - nbr)
        r = torch.cat([data.flatten(1), prior, limits, smooth], 1)
        rest = r[:, data.shape[1] * 3:]
        cost = gmof_energy(err, sigma).sum(-1) / DATA_UNIT_M**2 + (rest * rest).sum(-1)
        if not jacobian:
            return r, None, cost
        b, m = err.shape[:2]
        # d pred / d params: rotations of joints 0..21 and the translation
        d_pred = torch.einsum("mk,bkcji->bmcji", tg.weights_joints, dj) \
            + torch.einsum("mk,bkcji->bmcji", tg.weights_vertices, dv)
        d_pred = d_pred.flatten(-2)  # (B, M, 3, 66)
        row_sum = tg.weights_joints.sum(1) + tg.weights_vertices.sum(1)  # (M,)
        eye3 = torch.eye(3, dtype=p.dtype, device=p.device)
        d_pred = torch.cat([d_pred, row_sum[None, :, None, None] * eye3.expand(b, m, 3, 3)], -1)  # (B, M, 3, 69)
        j_data = (irls[..., None] * d_pred / DATA_UNIT_M).flatten(1, 2)  # (B, 3M, 69)
        pad = lambda j_body: torch.nn.functional.pad(j_body, (3, 3))  # noqa: E731  (.., 63) -> (.., 69)
        j_prior = (pad(math.sqrt(self.config.gmm_prior_weight) * self.gmm.jacobian(body)) if self.gmm is not None
                   else self.prior_jacobian.expand(b, -1, -1))
        j_lim = pad(w_lim * j_lim_body) if j_lim_body is not None else p.new_zeros((b, 0, p.shape[1]))
        j_smooth = sq_wt[..., None] * self.smooth_jacobian
        return r, torch.cat([j_data, j_prior, j_lim, j_smooth], 1), cost

    @staticmethod
    def _smooth_vector(d):
        return torch.cat([d[..., 3:66], d[..., 66:69] / DATA_UNIT_M], -1)

    # -- public API ------------------------------------------------------------------

    def mocap_targets(self, joints_world) -> torch.Tensor:
        """(T, M, 3) fitted rows of mocap joints (T, 32, 3) metres, on the fit device."""
        j = torch.as_tensor(np.asarray(joints_world), dtype=self.dtype, device=self.device)
        if j.ndim != 3 or j.shape[1:] != (32, 3):
            raise ValueError(f"mocap joints must be (T, 32, 3), got {tuple(j.shape)}")
        return j[:, self.targets.target_rows]

    def rigid_start(self, target: torch.Tensor, joints_rest: torch.Tensor, verts_rest: torch.Tensor) -> torch.Tensor:
        """(T, 69) start: zero body pose, torso aligned rigidly to target (T, M, 3)."""
        zero = target.new_zeros((NUM_POSE_PARAMS,))
        pred0 = self._predict(zero, joints_rest, verts_rest)  # (M, 3) rest pose, root at rest place
        torso = self.targets.torso_rows
        r, t = kabsch(pred0[torso].expand(target.shape[0], -1, -1), target[:, torso])
        pelvis = joints_rest[..., 0, :]
        transl = t - pelvis + (r @ pelvis[..., None])[..., 0]
        p = target.new_zeros((target.shape[0], NUM_POSE_PARAMS))
        p[:, :3] = matrix_to_rotvec(r)
        p[:, 66:69] = transl
        return p

    def solve_frames(self, p0, target, betas, iters, *, nbr=None, w_time=0.0, robust_from=0.5) -> LMResult:
        """LM on frames (T, 69) against target (T, M, 3) with fixed betas (NB,), chunked.

        The first ``robust_from`` fraction of iterations uses a wide (nearly quadratic) loss to
        pull far-off limbs in; the rest the configured Geman–McClure scale.
        """
        jr = rest_joints(self.skinner, betas)
        vr = rest_vertices(self.skinner, betas)
        nbr = p0 if nbr is None else nbr
        wt = torch.full((p0.shape[0],), float(w_time), dtype=self.dtype, device=self.device)
        out_p, out_c, out_conv = [], [], []
        n_wide = int(round(iters * robust_from))
        for s in range(0, p0.shape[0], self.chunk):
            sl = slice(s, s + self.chunk)
            p = p0[sl]
            res = None
            for sigma, n in ((1.0, n_wide), (self.config.data_sigma_m, iters - n_wide)):
                if n <= 0:
                    continue

                # the wide phase may cross the limits by limit_slack_deg (a hard wall there
                # leaves frames stuck on it in poorer minima); the hinge still pulls back
                slack = math.radians(self.config.limit_slack_deg) if sigma != self.config.data_sigma_m else 0.0
                if not slack:  # LM keeps a start whose every step is rejected: start within the limits
                    p = self.retract(p, torch.zeros_like(p), slack_rad=0.0)

                def fn(x, jacobian, sl=sl, sigma=sigma, hinges=bool(slack)):
                    return self.residuals(x, target[sl], jr, vr, nbr[sl], wt[sl], sigma, jacobian, hinges)

                def retract(x, step, slack=slack):
                    return self.retract(x, step, slack_rad=slack)

                res = lm_batched(fn, p, n, self.config.tol, damping_floor=self.damping_floor, retract=retract)
                p = res.params
            out_p.append(res.params)
            out_c.append(res.cost)
            out_conv.append(res.converged)
        return LMResult(torch.cat(out_p), torch.cat(out_c), torch.cat(out_conv))

    def frame_errors_mm(self, params, target, betas) -> torch.Tensor:
        """(T, 17) h36m17 joint errors in mm of params (T, 69) against target (T, M, 3)."""
        jr, vr = rest_joints(self.skinner, betas), rest_vertices(self.skinner, betas)
        pred = self._predict(params, jr, vr)
        ev = self.targets.eval_rows
        return per_joint_error_mm(pred[:, ev], target[:, ev])

    def _log(self, what, err):
        if log.isEnabledFor(logging.DEBUG):
            e = err.detach().cpu().numpy()
            log.debug("%s: MPJPE mean %.3f median %.3f max %.3f mm, stuck %d", what, e.mean(), np.median(e), e.max(),
                      int(self._stuck(err).sum()))

    def _stuck(self, err: torch.Tensor) -> torch.Tensor:
        """(T,) bool: frames whose MPJPE (T,) says a bad local minimum."""
        limit = max(self.config.retry_mm, 2 * float(err.median())) if err.numel() else self.config.retry_mm
        return err > limit

    def fit_keyframes(self, target, betas, iters) -> torch.Tensor:
        """(T, 69) independent fits of frames target (T, M, 3) from the rigid start,
        restarting stuck frames from the nearest good frame's pose."""
        jr, vr = rest_joints(self.skinner, betas), rest_vertices(self.skinner, betas)
        p = self.solve_frames(self.rigid_start(target, jr, vr), target, betas, iters).params
        for _ in range(2):
            err = self.frame_errors_mm(p, target, betas).mean(-1)
            bad = self._stuck(err)
            if not bool(bad.any()) or bool(bad.all()):
                break
            good_idx = torch.nonzero(~bad)[:, 0]
            bad_idx = torch.nonzero(bad)[:, 0]
            nearest = good_idx[(bad_idx[:, None] - good_idx[None, :]).abs().argmin(1)]
            start = p[nearest].clone()
            # keep the donor's body pose but align its torso rigidly to this frame's targets
            rigid = self.rigid_start(target[bad_idx], jr, vr)
            start[:, :3], start[:, 66:] = rigid[:, :3], rigid[:, 66:]
            retry = self.solve_frames(start, target[bad_idx], betas, iters, robust_from=0.3).params
            new_err = self.frame_errors_mm(retry, target[bad_idx], betas).mean(-1)
            better = new_err < err[bad_idx]
            p[bad_idx[better]] = retry[better]
        return p

    def _sweep(self, p, err, target, betas, keys, forward: bool, only_stuck: bool):
        """One pass over the frames between keyframes, all chunks at once: each frame starts
        from its already-solved neighbour (previous frame forward, next frame backward) and
        keeps the result when it beats the frame's current MPJPE (err, (T,) mm)."""
        step = self.config.keyframe_step
        lo, hi = keys[:-1], keys[1:]  # chunk ends (keyframes)
        for k in range(1, step):
            frames = lo + k if forward else hi - k
            frames = frames[(frames > lo) & (frames < hi)]
            if only_stuck:
                frames = frames[self._stuck(err)[frames]]
            if frames.numel() == 0:
                continue
            self._restart_from(p, err, frames, frames - 1 if forward else frames + 1, target, betas)
        return p, err

    def _bridge(self, p, err, target, betas, keys):
        """Fit every frame between keyframes in one batch, each started from its two
        keyframes' poses interpolated (rotations along the shorter arc, transl linearly);
        its pose in ``p`` (T, 69) and MPJPE in ``err`` (T,) mm are set."""
        is_key = torch.zeros(p.shape[0], dtype=torch.bool, device=p.device)
        is_key[keys] = True
        frames = torch.nonzero(~is_key)[:, 0]
        if frames.numel() == 0:
            return p, err
        nxt = torch.searchsorted(keys, frames)
        lo, hi = keys[nxt - 1], keys[nxt]
        w = ((frames - lo) / (hi - lo)).to(p.dtype)[:, None]
        rot = interpolate_rotvec(p[lo, :66].unflatten(-1, (22, 3)), p[hi, :66].unflatten(-1, (22, 3)),
                                 w.expand(-1, 22))
        start = torch.cat([rot.flatten(1), torch.lerp(p[lo, 66:], p[hi, 66:], w)], 1)
        res = self.solve_frames(start, target[frames], betas, self.config.bridge_iters, robust_from=0.0)
        p[frames] = res.params
        err[frames] = self.frame_errors_mm(res.params, target[frames], betas).mean(-1)
        return p, err

    def _restart_from(self, p, err, frames, donors, target, betas) -> None:
        """Fit ``frames`` (K,) starting from the poses of ``donors`` (K,); where that beats a
        frame's MPJPE ``err`` (T,) mm, its pose in ``p`` (T, 69) and its error are replaced."""
        res = self.solve_frames(p[donors], target[frames], betas, self.config.sweep_iters, robust_from=0.0)
        new_err = self.frame_errors_mm(res.params, target[frames], betas).mean(-1)
        better = new_err < err[frames]
        p[frames[better]] = res.params[better]
        err[frames[better]] = new_err[better]

    def _retry_outliers(self, p, err, target, betas):
        """Frames (keyframes included) clearly worse than the sequence's median, i.e. in a
        poorer but not 'stuck' minimum, restart from each temporal neighbour's pose; the best
        of the current and restarted poses is kept."""
        t = p.shape[0]
        frames = torch.nonzero(err > self.config.outlier_factor * err.median())[:, 0]
        if t < 2 or frames.numel() == 0:
            return p, err
        for donor in ((frames - 1).clamp(min=0), (frames + 1).clamp(max=t - 1)):
            keep = donor != frames
            if bool(keep.any()):
                self._restart_from(p, err, frames[keep], donor[keep], target, betas)
        return p, err

    @contextlib.contextmanager
    def _threads(self):
        n = self.config.cpu_threads
        if self.device.type != "cpu" or n <= 0:
            yield
            return
        old = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            yield
        finally:
            torch.set_num_threads(old)

    def fit_sequence(self, joints_world, betas, offsets=None) -> SequenceFit:
        """Fit every frame of one sequence.

        Args:
            joints_world: (T, 32, 3) mocap joints, world frame, metres.
            betas: (NB,) the subject's shape.
            offsets: optional (M, 3) the subject's mocap-skeleton offsets in the bone frames
                (``fit_shape``'s ``skeleton_offsets_m``), metres: the poses are fitted to the
                mocap minus them. The recorded errors are those of the body through the
                correspondence, without offsets.
        """
        with self._threads(), torch.no_grad():
            return self._fit_sequence(joints_world, betas, offsets)

    def bone_frames(self, p: torch.Tensor, joints_rest: torch.Tensor) -> torch.Tensor:
        """(B, M, 3, 3) world rotations of each prediction's bone frame for params p (B, 69)."""
        rot = rodrigues(self._full_pose(p) + self.skinner.pose_mean)
        r_world, _ = world_transforms(self.skinner, rot, joints_rest)
        return r_world[:, self.targets.frame_joints]

    def _without_offsets(self, target, p, joints_rest, offsets):
        """(B, M, 3) target minus the skeleton offsets (M, 3) carried by the poses p (B, 69)."""
        return target - torch.einsum("bmij,mj->bmi", self.bone_frames(p, joints_rest), offsets)

    def _fit_sequence(self, joints_world, betas, offsets=None) -> SequenceFit:
        raw = self.mocap_targets(joints_world)
        p, converged = self._fit_poses(raw, betas)
        betas_t = torch.as_tensor(np.asarray(betas), dtype=self.dtype, device=self.device)
        if offsets is not None and np.any(offsets):
            o = torch.as_tensor(np.asarray(offsets), dtype=self.dtype, device=self.device)
            jr = rest_joints(self.skinner, betas_t)
            for _ in range(self.config.offset_rounds):
                res = self.solve_frames(p, self._without_offsets(raw, p, jr, o), betas_t, self.config.frame_iters,
                                        nbr=neighbour_mean(p), w_time=self.config.temporal_weight, robust_from=0.0)
                p, converged = res.params, res.converged
        return self._sequence_result(p, raw, betas_t, converged)

    def _fit_poses(self, target, betas):
        """(params (T, 69), converged (T,)) of the sequence schedule on targets (T, M, 3)."""
        c = self.config
        betas = torch.as_tensor(np.asarray(betas), dtype=self.dtype, device=self.device)
        t = target.shape[0]
        keys = torch.unique(torch.cat([torch.arange(0, t, c.keyframe_step), torch.tensor([t - 1])])).to(self.device)
        p = target.new_zeros((t, NUM_POSE_PARAMS))
        p[keys] = self.fit_keyframes(target[keys], betas, c.keyframe_iters)
        err = torch.full((t,), float("inf"), dtype=self.dtype, device=self.device)
        err[keys] = self.frame_errors_mm(p[keys], target[keys], betas).mean(-1)
        self._log("keyframes", err[keys])
        bridged = c.bridge_iters > 0
        if bridged:
            p, err = self._bridge(p, err, target, betas, keys)
            self._log("bridge", err)
        p, err = self._sweep(p, err, target, betas, keys, forward=True, only_stuck=bridged)
        self._log("forward", err)
        p, err = self._sweep(p, err, target, betas, keys, forward=False, only_stuck=True)
        self._log("backward", err)
        p, err = self._retry_outliers(p, err, target, betas)
        self._log("outliers", err)
        rounds = max(1, c.temporal_rounds if c.temporal_weight > 0 else 1)
        per_round = max(1, c.frame_iters // rounds)
        converged = None
        for _ in range(rounds):
            res = self.solve_frames(p, target, betas, per_round, nbr=neighbour_mean(p), w_time=c.temporal_weight,
                                    robust_from=0.0)
            p, converged = res.params, res.converged
        return p, converged

    def _sequence_result(self, p, target, betas, converged) -> SequenceFit:
        c = self.config
        err = self.frame_errors_mm(p, target, betas)
        jr, vr = rest_joints(self.skinner, betas), rest_vertices(self.skinner, betas)
        pred = self._predict(p, jr, vr)
        prior = self._prior_residual(p[:, 3:66])
        limits = math.sqrt(c.angle_limit_weight) * limit_residual(p[:, 3:66], self.bone_axes)
        smooth = self._smooth_vector(p - neighbour_mean(p))
        energies = {
            "energy_data": gmof_energy(pred - target, c.data_sigma_m).sum(-1) / DATA_UNIT_M**2,
            "energy_pose_prior": (prior * prior).sum(-1),
            "energy_angle_limits": (limits * limits).sum(-1),
            "energy_temporal": c.temporal_weight * (smooth * smooth).sum(-1),
        }
        good = converged & torch.isfinite(err).all(-1)
        return SequenceFit(
            global_orient=_np(p[:, :3]), body_pose=_np(p[:, 3:66]), transl=_np(p[:, 66:69]),
            mpjpe_mm=_np(err.mean(-1)), joint_err_mm=_np(err), converged=_np(good),
            energies={k: _np(v) for k, v in energies.items()})

    # -- shape --------------------------------------------------------------------------

    def fit_shape(self, sequences: list) -> tuple[np.ndarray, dict]:
        """Betas shared by all of a subject's sequences.

        Args:
            sequences: list of (T_i, 32, 3) mocap joint arrays, metres.
        Returns:
            (betas (NB,) float64, info with ``frames`` (N, 2) [sequence, frame] used and
            ``mpjpe_mm`` (N,) of the joint fit).
        """
        with self._threads():
            return self._fit_shape(sequences)

    def _fit_shape(self, sequences: list) -> tuple[np.ndarray, dict]:
        c = self.config
        picks = pick_shape_frames([len(s) for s in sequences], c.shape_frames)
        target = torch.cat([self.mocap_targets(np.asarray(sequences[i])[f][None]) for i, f in picks]) \
            if picks else None
        if target is None:
            raise ValueError("no frames to fit a shape to")
        betas = self._betas_from_bone_lengths(target)
        # These frames have no warm start and a shared shape must not absorb poses that have
        # not converged: more iterations than keyframes get, and two rounds of
        # (poses alone with a global damping each, then betas + poses jointly).
        p = self.fit_keyframes(target, betas, c.shape_start_iters)
        for _ in range(c.shape_rounds):
            p, betas = self._joint_shape_lm(p, betas, target, c.shape_iters,
                                            self._shape_prior_weight(p, target, betas))
            p = self.solve_frames(p, target, betas, c.shape_pose_iters, robust_from=0.0).params
        offsets = target.new_zeros((target.shape[1], 3))
        for k in range(c.skeleton_rounds):
            p, offsets = self._fit_offsets(p, target, betas)
            if k + 1 < c.skeleton_rounds:  # the shape again, against the mocap minus the offsets
                corrected = self._without_offsets(target, p, rest_joints(self.skinner, betas), offsets)
                p, betas = self._joint_shape_lm(p, betas, corrected, c.shape_iters,
                                                self._shape_prior_weight(p, corrected, betas))
        err = self.frame_errors_mm(p, target, betas).mean(-1)
        return _np(betas).astype(np.float64), {"frames": np.asarray(picks, dtype=np.int64).reshape(-1, 2),
                                               "mpjpe_mm": _np(err),
                                               "skeleton_offsets_m": _np(offsets).astype(np.float64)}

    def _fit_offsets(self, p, target, betas):
        """(poses (N, 69), offsets (M, 3) metres) of the mocap skeleton against the fitted body.

        A mocap joint defined differently from the correspondence sits at a fixed offset in its
        bone frame: the mean of the residuals seen in the bone frames, with the shape held
        (plausible, from the shape fit), alternated with refitting the poses to the mocap
        minus the offsets (``offset_rounds`` times).
        """
        jr, vr = rest_joints(self.skinner, betas), rest_vertices(self.skinner, betas)
        offsets = target.new_zeros((target.shape[1], 3))
        for _ in range(self.config.offset_rounds):
            frames = self.bone_frames(p, jr)
            resid = target - self._predict(p, jr, vr)
            offsets = torch.einsum("bmji,bmj->bmi", frames, resid).mean(0)
            p = self.solve_frames(p, self._without_offsets(target, p, jr, offsets), betas,
                                  self.config.shape_pose_iters, robust_from=0.0).params
        return p, offsets

    def rigid_pairs(self, betas: torch.Tensor | None = None, poses: int = 16, tol_m: float = 5e-4) -> torch.Tensor:
        """(Q, 2) pairs of predicted target rows whose distance the body pose does not change
        (bones: both ends on one rigid segment), found on random poses of the model; pairs
        closer than 5 cm are left out."""
        betas = torch.zeros(self.num_betas, dtype=self.dtype, device=self.device) if betas is None else betas
        jr, vr = rest_joints(self.skinner, betas), rest_vertices(self.skinner, betas)
        gen = torch.Generator().manual_seed(0)
        p = (torch.rand((poses, NUM_POSE_PARAMS), generator=gen, dtype=torch.float64) - 0.5).to(self.dtype)
        p = p.to(self.device)
        p[0] = 0.0
        pred = self._predict(p, jr, vr)  # (poses, M, 3)
        d = torch.linalg.norm(pred[:, :, None] - pred[:, None], dim=-1)  # (poses, M, M)
        spread = d.max(0).values - d.min(0).values
        ok = (spread < tol_m) & (d[0] > 0.05)
        ok = torch.triu(ok, diagonal=1)
        return torch.nonzero(ok)

    def _betas_from_bone_lengths(self, target: torch.Tensor, iters: int = 20) -> torch.Tensor:
        """(NB,) betas whose rest bone lengths match the median mocap bone lengths of target
        (N, M, 3): a pose-free start for the joint shape fit. Gauss–Newton with the N(0, 1)
        beta prior weighed by the residual level of the lengths (refitted three times, as in
        ``_shape_prior_weight``: no prior on exact lengths), the beta hinge and bounds."""
        c = self.config
        pairs = self.rigid_pairs()
        if pairs.shape[0] == 0:
            return target.new_zeros(self.num_betas)
        i, j = pairs[:, 0], pairs[:, 1]
        data = torch.linalg.norm(target[:, i] - target[:, j], dim=-1).median(0).values  # (Q,)
        zero = target.new_zeros((1, NUM_POSE_PARAMS))

        def length_error(b):  # (Q,) cm
            pred = self._predict(zero, rest_joints(self.skinner, b), rest_vertices(self.skinner, b))[0]
            return (torch.linalg.norm(pred[i] - pred[j], dim=-1) - data) / DATA_UNIT_M

        b = target.new_zeros(self.num_betas)
        for _ in range(3):
            e = length_error(b)
            sigma2 = float((e * e).sum()) / max(pairs.shape[0] - self.num_betas, 1)
            w_prior = math.sqrt(c.beta_prior_weight + sigma2 / c.shape_evidence_frames)

            def res(bb, w_prior=w_prior):
                hinge = torch.relu(bb.abs() - c.beta_soft_bound)
                return torch.cat([length_error(bb), w_prior * bb, math.sqrt(c.beta_bound_weight) * hinge])

            b = self._gauss_newton_betas(res, b, iters)
        return b

    def _gauss_newton_betas(self, res, b: torch.Tensor, iters: int) -> torch.Tensor:
        """Levenberg–Marquardt on betas (NB,) for residuals res(b) (R,), within the bounds."""
        bound = self.config.beta_bound
        lam = 1e-3
        r = res(b)
        for _ in range(iters):
            jac = jacfwd(res)(b)
            a = jac.T @ jac
            step = -torch.linalg.solve(a + lam * torch.diag(a.diagonal() + 1e-6), jac.T @ r)
            b_new = (b + step).clamp(-bound, bound)
            r_new = res(b_new)
            cost, cost_new = float((r * r).sum()), float((r_new * r_new).sum())
            if cost_new < cost:
                b, r, lam = b_new, r_new, max(lam / 3, 1e-9)
                if cost - cost_new < 1e-9 * (cost + 1):
                    break
            else:
                lam *= 4
        return b

    def _shape_prior_weight(self, p, target, betas) -> float:
        """Beta prior weight per frame (cm^2 per unit beta^2) for the joint shape fit.

        betas ~ N(0, 1) (SMPL-X's unit-variance shape space) against data whose error level
        sigma^2 (cm^2 per coordinate) is estimated from the current fit's residuals. The frames
        share one skeleton: a mocap joint defined differently from the correspondence errs the
        same way in all of them, so their agreement is no more evidence about the shape than
        ``shape_evidence_frames`` frames would be. On exact data sigma -> 0 and the prior
        vanishes (the exact shape is reached); under a skeleton mismatch it keeps the shape
        plausible instead of absorbing the mismatch.
        """
        c = self.config
        jr, vr = rest_joints(self.skinner, betas), rest_vertices(self.skinner, betas)
        err = (self._predict(p, jr, vr) - target) / DATA_UNIT_M
        sigma2 = float((err * err).mean())
        return c.beta_prior_weight + sigma2 / c.shape_evidence_frames

    def _joint_shape_lm(self, p, betas, target, iters, prior_weight):
        """LM over (betas, all poses) with a Schur complement on the per-frame blocks;
        prior_weight: beta prior weight per frame (cm^2 per unit^2)."""
        c = self.config
        sigma = c.data_sigma_m
        sk = self.skinner

        zero_w = p.new_zeros(p.shape[0])

        def res(pp, b, jacobian):
            jr, vr = rest_joints(sk, b), rest_vertices(sk, b)
            return self.residuals(pp, target, jr, vr, pp, zero_w, sigma, jacobian, hinges=False)  # steps projected

        def jac_fn(pp, b):
            r, jp, cost = res(pp, b, True)
            jb = jacfwd(lambda bb: res(pp, bb, False)[0])(b)  # (N, R, NB): 10 forward tangents
            return (jp, jb), r, cost

        def val_fn(pp, b):
            return res(pp, b, False)[2]

        wb = prior_weight * p.shape[0]
        wh = c.beta_bound_weight * p.shape[0]
        lam = 1e-3

        def hinge(b):
            return torch.relu(b.abs() - c.beta_soft_bound)

        def total(cost_frames, b):
            return cost_frames.sum() + wb * (b * b).sum() + wh * (hinge(b) ** 2).sum()

        for _ in range(iters):
            (jp, jb), r, cost_f = jac_fn(p, betas)
            cost = total(cost_f, betas)
            app = jp.transpose(-1, -2) @ jp
            apb = jp.transpose(-1, -2) @ jb
            active = (hinge(betas) > 0).to(p.dtype)
            abb = (jb.transpose(-1, -2) @ jb).sum(0) + torch.diag_embed(wb + wh * active)
            gp = (jp.transpose(-1, -2) @ r[..., None])[..., 0]
            gb = (jb.transpose(-1, -2) @ r[..., None])[..., 0].sum(0) + wb * betas \
                + wh * torch.sign(betas) * hinge(betas)
            app_d = app + torch.diag_embed(lam * (app.diagonal(dim1=-2, dim2=-1) + 1e-6))
            abb_d = abb + torch.diag_embed(lam * (abb.diagonal() + 1e-6))
            # Schur complement: eliminate the per-frame pose blocks
            chol = torch.linalg.cholesky(app_d.double())
            inv_apb = torch.cholesky_solve(apb.double(), chol)
            inv_gp = torch.cholesky_solve(gp.double()[..., None], chol)[..., 0]
            s = abb_d.double() - (apb.double().transpose(-1, -2) @ inv_apb).sum(0)
            rhs = -gb.double() + (apb.double().transpose(-1, -2) @ inv_gp[..., None])[..., 0].sum(0)
            db = torch.linalg.solve(s, rhs)
            dp = -inv_gp - (inv_apb @ db)
            b_new = (betas + db.to(p.dtype)).clamp(-c.beta_bound, c.beta_bound)
            p_new = self.retract(p, dp.to(p.dtype), cap=False)
            cost_new = total(val_fn(p_new, b_new), b_new)
            if torch.isfinite(cost_new) and cost_new < cost:
                rel = float((cost - cost_new) / cost)
                p, betas, lam = p_new, b_new, max(lam / 3, 1e-9)
                if rel < 1e-6:  # the shared shape converges slowly: stop only on a plateau
                    break
            else:
                lam = lam * 4
                if lam > 1e8:
                    break
        return p, betas


def pick_shape_frames(lengths: list[int], total: int) -> list[tuple[int, int]]:
    """Evenly spaced (sequence, frame) pairs, ~total in all, spread over sequences by length."""
    n_all = sum(lengths)
    picks = []
    for i, n in enumerate(lengths):
        if n == 0:
            continue
        k = max(1, min(n, round(total * n / max(n_all, 1))))
        idx = np.unique(np.linspace(0, n - 1, k).round().astype(int))
        picks.extend((i, int(f)) for f in idx)
    return picks


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
