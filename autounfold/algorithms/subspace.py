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

With a ``momentum`` beta (layer ``subspace_momentum``) the learned candidate gains a heavy-ball
term, W_L = W + (alpha / rho) G + beta (W - W_prev) and U_L = U + (alpha / rho) V + beta (U - U_prev),
from the last step's unit iterate and its image (the start scaled to unit norm; none before the
second step, so beta_1 has no effect). For one stream its two quotients need five more scalars
(Re W^H D, Re U^H E = Re G^H D, ||D||^2, Re V^H E, ||E||^2 for D = W - W_prev, E = U - U_prev): one
dot product (V with U_prev) and four carried from the last step's coefficients, no more products
with H; the safeguard compares it with the same power-iteration step. For S > 1 the term is added
to the basis (orthonormalised with a positive R diagonal, so that consecutive bases keep their
columns' order and phase) and the S x S Gram matrices of the candidate are measured. A per-layer
step alone fixes a real polynomial of A; with the momentum the recurrence can also place complex
roots (Chebyshev's three-term recurrence is this form).

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
    known without measuring (the start from the row energies), else None. Kept only by a rule with
    momentum (None otherwise and before the first step): W_prev, U_prev, the iterate and its image
    one step back as they were (the start unscaled), prev_scale (B,) the factor that brings them to
    unit norm (None: they have it), and, for the scaled previous iterate, prev_norms (||W_prev||^2,
    ||U_prev||^2) and prev_cross (Re W^H W_prev, Re U^H U_prev), each (B,), carried as scalars from
    the step's coefficients rather than measured. ``x`` is the precoder read out of the state."""

    W: torch.Tensor
    U: Optional[torch.Tensor]
    power: torch.Tensor
    noise_var: Optional[torch.Tensor] = None
    norm2: Optional[torch.Tensor] = None
    W_prev: Optional[torch.Tensor] = None
    U_prev: Optional[torch.Tensor] = None
    prev_norms: Optional[tuple] = None
    prev_cross: Optional[tuple] = None
    prev_scale: Optional[torch.Tensor] = None

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


def _orthonormal(W: torch.Tensor, positive: bool = False) -> torch.Tensor:
    """An orthonormal basis (B, n, S) of the columns of W (Householder QR: orthonormal columns even
    where W is rank-deficient; the extra columns then carry Ritz value 0 and get no power).
    ``positive``: each column's phase chosen so that R has a real positive diagonal (Q then is what
    Gram-Schmidt gives: column j close to W's column j where W is near orthonormal)."""
    Q, R = torch.linalg.qr(W.resolve_conj())
    if not positive:
        return Q
    d = torch.diagonal(R, dim1=-2, dim2=-1)
    mag = d.abs()
    phase = torch.where(mag > 0, d / mag.clamp_min(1e-30), torch.ones_like(d))
    return Q * phase.unsqueeze(-2)


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

    Per-iteration parameters: step (alpha, signed; |alpha| >= 1e6 is power iteration) and
    momentum (beta, signed; absent: none).
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
            prev = None if beta is None or state.W_prev is None else (state.W_prev, state.U_prev)
            W_n, U_n = self._step_block(H, W, U, G, V, alpha, beta, prev)
            if beta is None:
                return SubspaceState(W_n, U_n, state.power, inst.noise_var)
            return SubspaceState(W_n, U_n, state.power, inst.noise_var, W_prev=W, U_prev=U)
        prev = None if beta is None or state.W_prev is None else \
            (state.W_prev, state.U_prev, *state.prev_norms, *state.prev_cross, state.prev_scale)
        W_n, U_n, carry = self._step_one(W, U, G, V, alpha, state.norm2, beta, prev, unit=state.U is not None)
        if beta is None:
            return SubspaceState(W_n, U_n, state.power, inst.noise_var)
        pw, pu, xw, xu, r = carry
        return SubspaceState(W_n, U_n, state.power, inst.noise_var, W_prev=W, U_prev=U, prev_norms=(pw, pu),
                             prev_cross=(xw, xu), prev_scale=r)

    def _step_one(self, W, U, G, V, alpha, nw=None, beta=None, prev=None, unit=True):
        """One stream: the candidate W_L = W + (alpha / rho) G (+ beta (W - W_prev)), taken where the
        safeguard admits it, else the power-iteration step G; returns the unit-norm iterate, its image
        and, with momentum, what the next step needs of this one (``SubspaceState``'s prev_* fields).
        Every scalar of the test comes from the norms and dot products measured here (nw, nu, nv, ng
        and, with momentum, Re V^H U_prev) and the carried ones, in fused ops: on CPU each op on a (B,)
        vector costs about as much as a reduction over H W, so the op count is the layer's cost."""
        # nw = ||W||^2 (1 up to rounding after a step, the row energy at the start; measured, so that
        # rounding cannot build up over layers), nu = W^H A W, ng = ||A W||^2, nv = W^H A^3 W (fused
        # reductions of real views: a norm or a dot product is one pass, where square-then-sum writes
        # a temporary)
        Wr, Ur, Vr, Gr = (torch.view_as_real(t) for t in (W, U, V, G))
        nw = frob2(W) if nw is None else nw
        nu, nv = frob2(U), frob2(V)
        Vf = Vr.flatten(1)
        ng = torch.linalg.vecdot(Ur.flatten(1), Vf)
        a = batch_scalar(alpha, nu)
        big = a.abs() >= POWER_ITERATION
        c = torch.where(big, 0.0, a * nw / nu.clamp_min(1e-30))  # alpha / rho, rho = nu / nw
        cc = c * c
        n_l = torch.addcmul(torch.addcmul(nw, c, nu, value=2.0), cc, ng)      # ||W_L||^2
        parts = torch.addcmul(nw, cc, ng)
        u_l = torch.addcmul(torch.addcmul(nu, c, ng, value=2.0), cc, nv)      # ||U_L||^2 = W_L^H A W_L
        if prev is not None:
            # the heavy-ball term beta D, beta E (D = W - W_prev, E = U - U_prev at unit scale) from the
            # carried norms and cross products and one dot product, without forming D and E: Re W^H D =
            # nw - xw, ||D||^2 = nw + pw - 2 xw, Re U^H E = nu - xu, ||E||^2 alike, Re V^H E = ng - Re V^H U_prev
            Wp, Up, pw, pu, xw, xu, r = prev
            m = torch.where(big, 0.0, batch_scalar(beta, nu))
            wd, ue = nw - xw, nu - xu
            dd = (wd + pw - xw).clamp_min(0.0)
            n_l = torch.addcmul(n_l, m, torch.add(m * dd, torch.addcmul(wd, c, ue), alpha=2.0))
            parts = torch.addcmul(parts, m * m, dd)
            xv = torch.linalg.vecdot(Vf, torch.view_as_real(Up).flatten(1))
            ve = ng - (xv if r is None else xv * r)
            ee = (ue + pu - xu).clamp_min(0.0)
            u_l = torch.addcmul(u_l, m, torch.add(m * ee, torch.addcmul(ue, c, ve), alpha=2.0))
        if self.safeguard:
            take = (n_l > CANCELLATION * parts) & (u_l * ng >= nv * n_l) & ~big
        else:
            take = ~big
        s = torch.where(take, n_l, ng).clamp_min(1e-30).rsqrt()
        ca = take * s
        cb = torch.where(take, c, 1.0) * s
        if prev is None:
            k = ca
            W_n = torch.addcmul(Wr * k.view(-1, 1, 1, 1), Gr, cb.view(-1, 1, 1, 1))
            U_n = torch.addcmul(Ur * k.view(-1, 1, 1, 1), Vr, cb.view(-1, 1, 1, 1))
        else:                        # ca W + cb G + cd (W - W_prev) = (ca + cd) W + cb G - cd W_prev
            cd = ca * m
            k = ca + cd
            cp = (cd if r is None else cd * r).view(-1, 1, 1, 1)
            k4, cb4 = k.view(-1, 1, 1, 1), cb.view(-1, 1, 1, 1)
            W_n = torch.addcmul(torch.addcmul(Wr * k4, Gr, cb4), torch.view_as_real(Wp), cp, value=-1.0)
            U_n = torch.addcmul(torch.addcmul(Ur * k4, Vr, cb4), torch.view_as_real(Up), cp, value=-1.0)
        W_n, U_n = torch.view_as_complex(W_n), torch.view_as_complex(U_n)
        if beta is None:
            return W_n, U_n, None
        # what the next step needs of this one: W (at unit scale: the start is not) as its previous
        # iterate, Re W_n^H W = k nw + cb nu - cd xw and Re U_n^H U = k nu + cb ng - cd xu from the
        # coefficients (G^H W = U^H U, V^H U = G^H G). Exact for the exact iterate; the stored W_n
        # differs from it by its rounding, which is largest where the candidate cancels (up to ~1e-3
        # relative at the 1e-4 threshold, as its norm): measuring would agree with the stored vector
        # to 1e-7 but costs a reduction over W a layer, and no tested quotient moved by it
        xw_n = torch.addcmul(k * nw, cb, nu)
        xu_n = torch.addcmul(k * nu, cb, ng)
        if prev is not None:
            xw_n, xu_n = torch.addcmul(xw_n, cd, xw, value=-1.0), torch.addcmul(xu_n, cd, xu, value=-1.0)
        if unit:
            return W_n, U_n, (nw, nu, xw_n, xu_n, None)
        r_n = nw.clamp_min(1e-30).rsqrt()
        return W_n, U_n, (nw * r_n * r_n, nu * r_n * r_n, xw_n * r_n, xu_n * r_n, r_n)

    def _step_block(self, H, W, U, G, V, alpha, beta=None, prev=None):
        """S > 1 streams on an orthonormal basis W: the candidate W_L = W + (alpha / nu_min) G
        (+ beta (W - W_prev), with momentum and a previous basis), taken where its sum of Ritz values
        is at least power iteration's (G), then re-orthonormalised; returns the basis and H times it.
        With momentum the basis is orthonormalised with a positive R diagonal (Gram-Schmidt's), so
        that consecutive bases keep their columns' order and phase and W - W_prev is a small step,
        not the difference of two bases of one subspace."""
        Nu = U.mH @ U                                             # W^H A W   (W^H W = I)
        Ng = U.mH @ V                                             # G^H G
        Nv = V.mH @ V
        nu_min = torch.linalg.eigvalsh(Nu)[..., 0].clamp_min(1e-30)   # weakest Ritz value
        a = batch_scalar(alpha, nu_min)
        big = a.abs() >= POWER_ITERATION
        c = torch.where(big, torch.zeros_like(a), a / nu_min)
        cm = c.view(-1, 1, 1).to(Nu.dtype)
        W_l = W + cm * G
        if prev is not None:
            m = torch.where(big, 0.0, batch_scalar(beta, nu_min))
            mm = m.view(-1, 1, 1).to(Nu.dtype)
            D, E = W - prev[0], U - prev[1]
            W_l = W_l + mm * D
        if self.safeguard:
            scale = 1.0 + (c * c) * torch.diagonal(Ng, dim1=-2, dim2=-1).real.sum(-1)
            if prev is None:
                eye = torch.eye(W.shape[-1], dtype=Nu.dtype, device=Nu.device)
                N_l = eye + 2.0 * cm * Nu + cm * cm * Ng          # W_L^H W_L
                M_l = Nu + 2.0 * cm * Ng + cm * cm * Nv           # U_L^H U_L
            else:                                                 # measured: the cross terms with D, E
                U_l = U + cm * V + mm * E
                N_l, M_l = W_l.mH @ W_l, U_l.mH @ U_l
                scale = scale + (m * m) * frob2(D)
            ritz_l = _ritz_sum(N_l, M_l)
            ritz_p = _ritz_sum(Ng, Nv)
            well = torch.linalg.eigvalsh(N_l)[..., 0] > CANCELLATION * scale
            take = well & torch.isfinite(ritz_l) & (ritz_l >= ritz_p) & ~big
        else:
            take = ~big
        W_n = _orthonormal(torch.where(take.view(-1, 1, 1), W_l, G), positive=beta is not None)
        return W_n, h_times(H, W_n)


def _ritz_sum(N: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """tr(N^{-1} M) for Hermitian positive definite N and Hermitian M, (B,) real; -inf where N is
    not positive definite (such a candidate is never taken)."""
    L, info = torch.linalg.cholesky_ex(N)
    X = torch.cholesky_solve(M, L)
    out = torch.diagonal(X, dim1=-2, dim2=-1).real.sum(-1)
    return torch.where(info == 0, out, torch.full_like(out, -math.inf))
