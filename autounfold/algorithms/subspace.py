"""Safeguarded subspace iteration for single-user precoding under a total-power constraint: the
update rule of power iteration (classical) and of the safeguarded Auto-PGD network (``subspace``
layer, learned signed steps).

For one stream, a projected gradient step on the spectral efficiency with the Rayleigh-quotient
scaling is ``w <- normalise(w + alpha A w / rho)`` with ``A = H^H H`` and ``rho = w^H A w / w^H w``
(the ``signed`` layer of ``ProximalGradient``). Negative steps put the roots of the update polynomial
under the unwanted eigenvalues (Chebyshev acceleration of power iteration); a step whose root lands
on the *wanted* eigenvalue (a rank-one channel: one receive antenna, zero angular spread) cancels the
very direction the solver is after. This rule makes that impossible:

    G = H^H U,  V = H G                      (U = H W carried from the last step: 2 mat-vecs a step)
    learned candidate   W_L = W + (alpha / rho) G,   U_L = U + (alpha / rho) V
    power iteration     W_P = G,                      U_P = V
    W <- the candidate with the larger Rayleigh quotient (per sample), normalised

Both quotients come from four scalars (||W||^2, ||U||^2 = W^H A W, ||G||^2 = Re U^H V, ||V||^2), so
the safeguard costs no mat-vec. Each step is therefore at least as good as a power-iteration step
from the same point, the Rayleigh quotient never decreases, and a step that cannot be evaluated
accurately (the candidate cancels to below 1e-4 of its parts in float32) is not taken.

For S > 1 streams the same step runs on an orthonormal basis W (B, n_tx, S): the quotient compared
is the sum of the Ritz values tr((W^H W)^{-1} W^H A W) (S x S matrices only), the basis is
re-orthonormalised by Householder QR (which stays orthonormal when the candidate is rank-deficient,
e.g. a rank-one channel with several streams) and U = H W is recomputed from it (a third mat-vec per
step for S > 1), and the precoder read out is the Rayleigh-Ritz solution: the
eigenvectors of the S x S matrix W^H A W with water-filling powers over its Ritz values. With W
spanning the top-S eigenspace this is the closed-form optimum. The readout's rotation and powers are
the optimum over the subspace, so (envelope theorem) they are not differentiated: gradients reach
the learned steps through the basis.

``safeguard=False`` keeps the raw learned step (the ``signed`` layer's math, for ablations);
``step = +inf`` (or any step with |alpha| >= 1e6) is power iteration.

With a ``momentum`` beta (layer ``subspace_momentum``, one stream) the learned candidate gains a
heavy-ball term, W_L = W + (alpha / rho) G + beta (W - W_prev) and U_L = U + (alpha / rho) V +
beta (U - U_prev), from the last step's unit iterate and its image (the start scaled to unit norm;
none before the second step, so beta_1 has no effect).
Its two quotients need five more scalars (Re W^H D, Re U^H E = Re G^H D, ||D||^2, Re V^H E, ||E||^2
for D = W - W_prev, E = U - U_prev), which three dot products with the previous iterate and image and
their carried norms give, no more products with H; the safeguard compares it with the same
power-iteration step. A per-layer step alone fixes a real polynomial of A; with the momentum
the recurrence can also place complex roots (Chebyshev's three-term recurrence is this form).

Cost: the products are ``U^H H`` (a row vector times H) and ``H G``, so H is read twice per step and
never conjugated or copied (``H.mH @ U`` would materialise the conjugate of all of H on every call,
which on CPU costs as much as the product); everything else is O(B) scalars (S = 1) or S x S
matrices. This is the path ``autounfold.load`` returns; there is no separate inference kernel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch

from ..errors import ConfigError
from ..plugins import ALGORITHMS
from ..problems.base import batch_scalar, frob2, scale_rows
from ..problems.beamforming import water_filling

# a candidate whose squared norm is below this share of ||W||^2 + ||(alpha/rho) G||^2 cancelled in
# float32 (relative error of its quotient above ~1e-3): it is not taken
CANCELLATION = 1e-4
POWER_ITERATION = 1e6


@dataclass
class SubspaceState:
    """W: (B, n_tx, S) complex basis (S = 1: unit norm after a step, the start at its own norm;
    S > 1: orthonormal columns);
    U: (B, n_rx, S) = H W (None before the first step); power: total power P, (B,) (the power of the
    start) or a float; noise_var: (B,) (None before the first step); norm2: (B,) ||W||^2 where it is
    known without measuring (the start from the row energies), else None; W_prev, U_prev: the iterate
    and its image one step back, and prev_norms their squared norms ((B,), (B,)), kept only by a rule
    with momentum (None otherwise and before the first step). ``x`` is the precoder read out of the state."""

    W: torch.Tensor
    U: Optional[torch.Tensor]
    power: torch.Tensor
    noise_var: Optional[torch.Tensor] = None
    norm2: Optional[torch.Tensor] = None
    W_prev: Optional[torch.Tensor] = None
    U_prev: Optional[torch.Tensor] = None
    prev_norms: Optional[tuple] = None

    @property
    def x(self) -> torch.Tensor:
        """The precoder (B, n_tx, S) complex64 at full power P: the basis vector (S = 1), or the Ritz
        vectors of W^H A W with water-filling powers over the Ritz values (S > 1)."""
        W = self.W
        if W.shape[-1] == 1 or self.U is None:
            # scaled by its measured norm (one reduction), so the power constraint holds to rounding
            return scale_rows(W, (self.power / frob2(W).clamp_min(1e-30)).sqrt())
        with torch.no_grad():
            ritz, Q = torch.linalg.eigh(self.U.mH @ self.U)              # ascending
            ritz, Q = ritz.flip(-1).double(), Q.flip(-1)
            p = water_filling(ritz / self.noise_var.double().unsqueeze(-1), self.power.double().unsqueeze(-1))
            rot = Q * p.sqrt().to(Q.real.dtype).unsqueeze(-2)
        return W @ rot

    # the unfolded network and the classical solver only ever read ``x``; a per-sample reference
    # solve (which slices states) does not run this rule
    @property
    def x_prev(self) -> torch.Tensor:  # pragma: no cover - kept for the State protocol
        return self.W


def _orthonormal(W: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (B, n, S) of the columns of W (Householder QR: orthonormal columns even
    where W is rank-deficient; the extra columns then carry Ritz value 0 and get no power)."""
    return torch.linalg.qr(W.resolve_conj())[0]


def h_adjoint_times(U: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """H^H U (B, n_tx, S) computed as (U^H H)^H: only the small U is conjugated, never H."""
    return (U.mH @ H).mH.resolve_conj()


def h_times(H: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """H W (B, n_rx, S) computed as (W^T H^T)^T: on CPU the row-vector form of this batched product
    runs about 2x faster than ``H @ W`` for a thin W (same result)."""
    return (W.mT @ H.mT).mT


@ALGORITHMS.register
class Subspace:
    """Safeguarded (Chebyshev-accelerated) subspace iteration, see the module docstring.

    Args:
        safeguard: take the learned step only where its Rayleigh quotient (S = 1) or sum of Ritz
            values (S > 1) is at least power iteration's from the same point.

    Per-iteration parameters: step (alpha, signed; |alpha| >= 1e6 is power iteration) and, one
    stream only, momentum (beta, signed; absent: none).
    """

    name = "subspace"
    parameters = ("step", "momentum")
    problems = ("beamforming",)
    normalize = "rayleigh"                     # the steps are relative to the Rayleigh quotient

    def __init__(self, safeguard: bool = True):
        self.safeguard = bool(safeguard)

    @staticmethod
    def check(problem) -> None:
        if problem.name != "beamforming" or getattr(problem, "constraint", None) != "total":
            raise ConfigError("the subspace rule (layer 'subspace') solves beamforming under a total-power constraint "
                              f"(got {problem.name} with constraint {getattr(problem, 'constraint', None)!r}); "
                              "use layer 'signed' or 'momentum' for per-antenna power")

    @classmethod
    def from_model_config(cls, cfg, problem) -> "Subspace":
        cls.check(problem)
        if cfg.gradient_scaling not in ("auto", "rayleigh"):
            raise ConfigError(f"layer {cfg.layer!r}: steps are relative to the Rayleigh quotient; "
                              f"model.gradient_scaling must be auto or rayleigh (got {cfg.gradient_scaling!r})")
        if cfg.layer == "subspace_momentum" and getattr(problem, "n_streams", 1) != 1:
            raise ConfigError(f"layer 'subspace_momentum' runs one stream (got problem.n_streams={problem.n_streams}); "
                              "use layer 'subspace' for several")
        return cls(safeguard=True)

    @classmethod
    def for_reference(cls, decl) -> "Subspace":
        return cls(safeguard=True)

    def init_state(self, x0: torch.Tensor) -> SubspaceState:
        power = frob2(x0)
        x0 = x0.resolve_conj()
        # one stream: the start as it is (the step measures ||W||^2 and returns a unit vector; the
        # readout rescales to P), several: an orthonormal basis of its columns
        W = x0 if x0.shape[-1] == 1 else _orthonormal(x0)
        return SubspaceState(W, None, power)

    def start(self, problem, inst) -> Optional[SubspaceState]:
        """The matched-filter start straight from the input check's row energies, for one stream:
        W = the conjugate of the strongest row of H, unscaled (a step measures ||W||^2 and returns a
        unit vector, the readout scales to P), its squared norm that row's energy. The same state as
        ``init_state(problem.init(inst))`` up to the start's scale, which no step depends on; it skips
        the scaling to full power and measuring it again. None where it does not apply (another start,
        several streams, per-antenna power, one receive antenna, no energies measured): the caller then
        takes that path."""
        energy, H = getattr(inst, "row_energy", None), inst.H
        if (getattr(problem, "init_method", None) != "matched_filter" or getattr(problem, "n_streams", None) != 1
                or getattr(problem, "constraint", None) != "total" or energy is None or H.shape[-2] == 1
                or energy.shape != H.shape[:2]):
            return None
        B, R, N = H.shape
        top, strongest = energy.max(dim=-1)                                                # (B,)
        if H.is_contiguous():       # row i of sample b is row b R + i of the (B R, n_tx) view (index_select
            rows = H.view(B * R, N).index_select(0, strongest + torch.arange(0, B * R, R, device=H.device))
        else:                       # is faster than H[arange, i]); a strided H is not copied for it
            rows = H[torch.arange(B, device=H.device), strongest]
        return SubspaceState(rows.conj().resolve_conj().unsqueeze(-1), None, float(problem.power), norm2=top)

    def step(self, problem, inst, state: SubspaceState, params: dict) -> SubspaceState:
        H, W = inst.H, state.W
        U = h_times(H, W) if state.U is None else state.U
        G = h_adjoint_times(U, H)                                # A W
        V = h_times(H, G)                                        # H A W
        alpha, beta = params["step"], params.get("momentum")
        if W.shape[-1] != 1:
            if beta is not None:
                raise ConfigError("the subspace rule's momentum runs one stream; this input has "
                                  f"{W.shape[-1]} (use layer 'subspace')")
            return SubspaceState(*self._step_block(H, W, U, G, V, alpha), state.power, inst.noise_var)
        prev = None if beta is None or state.W_prev is None else (state.W_prev, state.U_prev, *state.prev_norms)
        W_n, U_n, nw, nu = self._step_one(W, U, G, V, alpha, state.norm2, beta, prev)
        if beta is None:
            return SubspaceState(W_n, U_n, state.power, inst.noise_var)
        if state.U is None:          # the start is at its own norm; the heavy ball needs it at unit norm
            r2 = 1.0 / nw.clamp_min(1e-30)
            W, U, nw, nu = scale_rows(W, r2.sqrt()), scale_rows(U, r2.sqrt()), nw * r2, nu * r2
        return SubspaceState(W_n, U_n, state.power, inst.noise_var, W_prev=W, U_prev=U, prev_norms=(nw, nu))

    def _step_one(self, W, U, G, V, alpha, nw=None, beta=None, prev=None):
        # the inner products: nw = ||W||^2 (1 up to rounding after a step, P at the start; measured,
        # so that rounding cannot build up over layers), nu = W^H A W, ng = ||A W||^2, nv = W^H A^3 W (fused reductions of real views:
        # a norm or a dot product is one pass, where square-then-sum writes a temporary)
        Wr, Ur, Vr = torch.view_as_real(W), torch.view_as_real(U), torch.view_as_real(V)
        nw = frob2(W) if nw is None else nw
        nu, nv = frob2(U), frob2(V)
        ng = torch.linalg.vecdot(Ur.flatten(1), Vr.flatten(1))
        a = batch_scalar(alpha, nu)
        big = a.abs() >= POWER_ITERATION
        c = torch.where(big, 0.0, a * nw / nu.clamp_min(1e-30))  # alpha / rho, rho = nu / nw
        cc = c * c
        n_l = nw + 2.0 * c * nu + cc * ng                         # ||W_L||^2
        parts = nw + cc * ng
        if prev is not None:
            # the heavy-ball term beta D, beta E (D = W - W_prev, E = U - U_prev) from three dot products
            # and the carried norms, without forming D and E: Re W^H D = nw - Re W^H W_prev, ||D||^2 =
            # nw + ||W_prev||^2 - 2 Re W^H W_prev, Re U^H E (= Re G^H D), ||E||^2 and Re V^H E alike
            Wpr, Upr = torch.view_as_real(prev[0]).flatten(1), torch.view_as_real(prev[1]).flatten(1)
            xw = torch.linalg.vecdot(Wr.flatten(1), Wpr)
            xu = torch.linalg.vecdot(Ur.flatten(1), Upr)
            m = torch.where(big, 0.0, batch_scalar(beta, nu))
            wd, ue = nw - xw, nu - xu
            dd = (nw + prev[2] - 2.0 * xw).clamp_min(0.0)
            n_l = n_l + m * (2.0 * wd + 2.0 * c * ue + m * dd)
            parts = parts + m * m * dd
        if self.safeguard:
            u_l = nu + 2.0 * c * ng + cc * nv                     # ||U_L||^2: W_L^H A W_L
            if prev is not None:
                ve = ng - torch.linalg.vecdot(Vr.flatten(1), Upr)       # Re V^H E (V^H U = ng, real)
                ee = (nu + prev[3] - 2.0 * xu).clamp_min(0.0)
                u_l = u_l + m * (2.0 * ue + 2.0 * c * ve + m * ee)
            take = (n_l > CANCELLATION * parts) & (u_l * ng >= nv * n_l) & ~big
        else:
            take = ~big
        s = torch.where(take, n_l, ng).clamp_min(1e-30).rsqrt()
        ca = (take * s).view(-1, 1, 1, 1)
        cb = (torch.where(take, c, 1.0) * s).view(-1, 1, 1, 1)
        Gr = torch.view_as_real(G)
        if prev is None:
            W_n, U_n = torch.addcmul(Wr * ca, Gr, cb), torch.addcmul(Ur * ca, Vr, cb)
        else:                        # ca W + cb G + cd (W - W_prev) = (ca + cd) W + cb G - cd W_prev
            cd = (take * m * s).view(-1, 1, 1, 1)
            W_n = torch.addcmul(torch.addcmul(Wr * (ca + cd), Gr, cb), Wpr.view_as(Wr), cd, value=-1.0)
            U_n = torch.addcmul(torch.addcmul(Ur * (ca + cd), Vr, cb), Upr.view_as(Ur), cd, value=-1.0)
        return torch.view_as_complex(W_n), torch.view_as_complex(U_n), nw, nu

    def _step_block(self, H, W, U, G, V, alpha):
        Nu = U.mH @ U                                             # W^H A W   (W^H W = I)
        Ng = U.mH @ V                                             # G^H G
        Nv = V.mH @ V
        nu_min = torch.linalg.eigvalsh(Nu)[..., 0].clamp_min(1e-30)   # weakest Ritz value
        a = batch_scalar(alpha, nu_min)
        big = a.abs() >= POWER_ITERATION
        c = torch.where(big, torch.zeros_like(a), a / nu_min)
        cm = c.view(-1, 1, 1).to(Nu.dtype)
        W_l = W + cm * G
        if self.safeguard:
            eye = torch.eye(W.shape[-1], dtype=Nu.dtype, device=Nu.device)
            N_l = eye + 2.0 * cm * Nu + cm * cm * Ng              # W_L^H W_L
            M_l = Nu + 2.0 * cm * Ng + cm * cm * Nv               # U_L^H U_L
            ritz_l = _ritz_sum(N_l, M_l)
            ritz_p = _ritz_sum(Ng, Nv)
            scale = 1.0 + (c * c) * torch.diagonal(Ng, dim1=-2, dim2=-1).real.sum(-1)
            well = torch.linalg.eigvalsh(N_l)[..., 0] > CANCELLATION * scale
            take = well & torch.isfinite(ritz_l) & (ritz_l >= ritz_p) & ~big
        else:
            take = ~big
        W_n = _orthonormal(torch.where(take.view(-1, 1, 1), W_l, G))
        return W_n, h_times(H, W_n)


def _ritz_sum(N: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """tr(N^{-1} M) for Hermitian positive definite N and Hermitian M, (B,) real; -inf where N is
    not positive definite (such a candidate is never taken)."""
    L, info = torch.linalg.cholesky_ex(N)
    X = torch.cholesky_solve(M, L)
    out = torch.diagonal(X, dim1=-2, dim2=-1).real.sum(-1)
    return torch.where(info == 0, out, torch.full_like(out, -math.inf))
