"""Pose priors that need no licensed file, plus an optional user GMM.

- (the default pose prior, range-normalised swing/twist, is fitting.joint_limits.range_normalised_axes),
- joint-angle limits: no hyper-extension of knees and elbows (SMPLify-X's hinge convention for
  SMPL-X's T-pose: knees flex about +x, left elbow about -y, right elbow about +y),
- a user's Gaussian-mixture pose prior file (SMPLify's ``gmm_08.pkl`` layout: ``means (K, 69)``
  or ``(K, 63)``, ``covars (K, D, D)``, ``weights (K,)``), used as the max-mixture residual.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fitting.errors import BodyModelError

# (body-pose component index into the 63-vector, sign that means "hyper-extended")
# SMPLify-X: full-pose indices [55, 58, 12, 15] minus 3 (global orient), signs [1, -1, -1, -1].
ANGLE_LIMIT_INDEX = (52, 55, 9, 12)
"""Body-pose components limited: left elbow y, right elbow y, left knee x, right knee x."""
ANGLE_LIMIT_SIGN = (1.0, -1.0, -1.0, -1.0)
"""A positive ``sign * angle`` is hyper-extension and is penalised."""


def angle_limit_residual(body_pose: torch.Tensor) -> torch.Tensor:
    """(..., 4) hinge residuals, radians: how far knees and elbows bend the wrong way.

    Args:
        body_pose: (..., 63) axis-angle of SMPL-X body joints 1..21, radians.
    """
    idx = torch.as_tensor(ANGLE_LIMIT_INDEX, device=body_pose.device)
    sign = torch.as_tensor(ANGLE_LIMIT_SIGN, dtype=body_pose.dtype, device=body_pose.device)
    return torch.relu(body_pose[..., idx] * sign)


@dataclass(frozen=True)
class GMMPrior:
    """A Gaussian-mixture body-pose prior in residual form."""

    means: torch.Tensor
    """(K, 63) component means, radians."""
    prec_chol: torch.Tensor
    """(K, 63, 63) upper factors U with U^T U = precision of each component."""
    log_weight_terms: torch.Tensor
    """(K,) -log(w_k) + 0.5 log det(cov_k): the constant of each component's energy."""

    def residual(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(..., 63) residual of the best component: |r|^2 = Mahalanobis^2 of body_pose."""
        d = body_pose[..., None, :] - self.means  # (..., K, 63)
        r = torch.einsum("kij,...kj->...ki", self.prec_chol, d)
        energy = (r * r).sum(-1) + 2 * self.log_weight_terms
        best = energy.argmin(-1)
        return torch.take_along_dim(r, best[..., None, None], dim=-2)[..., 0, :]

    def jacobian(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(..., 63, 63) d residual / d body_pose: the best component's precision factor."""
        d = body_pose[..., None, :] - self.means
        r = torch.einsum("kij,...kj->...ki", self.prec_chol, d)
        best = ((r * r).sum(-1) + 2 * self.log_weight_terms).argmin(-1)
        return self.prec_chol[best]

    def to(self, dtype, device) -> GMMPrior:
        return GMMPrior(*(t.to(dtype=dtype, device=device) for t in (self.means, self.prec_chol, self.log_weight_terms)))


def load_gmm_prior(path: str | Path) -> GMMPrior:
    """Read a user's GMM pose prior (.pkl or .npz with means, covars, weights).

    Raises BodyModelError naming the file when it is missing or malformed. Means of
    length 69 (SMPL's 23 body joints) are cut to SMPL-X's first 21 joints (63).
    """
    path = Path(path)
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="latin1")
        else:
            data = dict(np.load(path, allow_pickle=False))
        means = np.asarray(data["means"], dtype=np.float64)
        covars = np.asarray(data["covars"], dtype=np.float64)
        weights = np.asarray(data["weights"], dtype=np.float64)
    except FileNotFoundError:
        raise BodyModelError(f"{path}: pose prior file not found") from None
    except Exception as e:  # unreadable or missing keys: the user's file is wrong
        raise BodyModelError(f"{path}: not a GMM pose prior (need means, covars, weights): {e}") from None
    if means.ndim != 2 or means.shape[1] not in (63, 69) or covars.shape != (means.shape[0], means.shape[1], means.shape[1]) \
            or weights.shape != (means.shape[0],):
        raise BodyModelError(f"{path}: GMM shapes means {means.shape}, covars {covars.shape}, weights {weights.shape} "
                             "are not (K, 63|69), (K, D, D), (K,)")
    means, covars = means[:, :63], covars[:, :63, :63]
    prec = np.linalg.inv(covars)
    upper = np.linalg.cholesky(prec).transpose(0, 2, 1)
    const = -np.log(weights) + 0.5 * np.linalg.slogdet(covars)[1]
    const = const - const.min()
    return GMMPrior(torch.as_tensor(means), torch.as_tensor(upper), torch.as_tensor(0.5 * const))
