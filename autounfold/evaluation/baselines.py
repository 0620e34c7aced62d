"""Classical baselines run through the same update rule as the unfolded networks."""
from __future__ import annotations

from typing import Iterable, Optional, Tuple

import torch

from ..algorithms import WMMSE, ProximalGradient, Subspace, fista_momentum, solve
from ..algorithms.subspace import h_adjoint_times, h_times
from ..algorithms.tuning import MOMENTA, RELAXATIONS, tune_pgd, tune_wmmse
from ..problems.base import frob2
from ..problems.beamforming import water_filling
from ..problems.hybrid import project_analog
from ..seeding import generator

# The seed article's PGD: raw (unnormalised) SE gradient, a small positive step, random start.
ARTICLE_STEP = 1e-3
# Power iteration is PGD with a scaled gradient and alpha -> infinity: w <- A w / ||A w||.
POWER_ITERATION_STEP = 1e6
# the momentum grid of the tuned fixed-step PGD that the benchmarks compare against
PGD_MOMENTA = (0.0, 0.2, 0.4, 0.6, 0.8)


def article_pgd(problem, inst, iterations: int):
    algo = ProximalGradient(normalize=None)
    return solve(problem, inst, algo, {"step": ARTICLE_STEP}, iterations, x0=problem.init(inst, "random", seed=7)).x


def power_iteration(problem, inst, iterations: int):
    """Power iteration from the problem's start: w <- A w / ||A w||. Under a total-power constraint
    through the subspace rule (block power iteration with the Rayleigh-Ritz readout and water-filling
    for several streams, the same code the ``subspace`` layer runs), else projected gradient with an
    infinite scaled step."""
    if getattr(problem, "constraint", None) == "total":
        return solve(problem, inst, Subspace(safeguard=False), {"step": POWER_ITERATION_STEP}, iterations).x
    return solve(problem, inst, ProximalGradient(normalize=problem.default_scaling), {"step": POWER_ITERATION_STEP}, iterations).x


@torch.no_grad()
def lanczos(problem, inst, iterations: int):
    """Block Lanczos (Rayleigh-Ritz over the Krylov space of A = H^H H from the problem's start) with
    the same mat-vec count as K iterations of the unfolded network or of power iteration: 2K + 1
    products with H or H^H. The precoder is the top-S Ritz vectors with water-filling over the Ritz
    values. For one stream it is the best vector of span{w0, A w0, ..., A^K w0}: no method that only
    combines those K products from the same start reaches a higher Rayleigh quotient, so it is the
    strongest classical solver of its depth (it needs an orthogonalisation and a (K+1)S eigenproblem).

    Total-power beamforming only; (B, n_tx, S) complex64. The products are the subspace rule's
    (``h_times``, ``h_adjoint_times``: H is never conjugated), so its latency compares like for like.
    One stream runs ``lanczos_one`` (the three-term recurrence, no QR per step); several streams the
    block form with full re-orthogonalisation below."""
    H = inst.H
    x0 = problem.init(inst)
    S = x0.shape[-1]
    if S == 1:
        return lanczos_one(problem, inst, iterations, x0)
    q, _ = torch.linalg.qr(x0.resolve_conj())
    Q, Us = [q], [h_times(H, q)]
    scale = frob2(H).sqrt().view(-1, 1)                                 # ||H||_F^2 >= lambda_max
    for _ in range(iterations):
        r = h_adjoint_times(Us[-1], H)                                  # A q_k
        for _ in range(2):                                              # full re-orthogonalisation, twice
            for p in Q:
                r = r - p @ (p.mH @ r)
        q, R = torch.linalg.qr(r)
        keep = torch.diagonal(R, dim1=-2, dim2=-1).abs() > 1e-5 * scale  # an invariant subspace: drop
        q = q * keep.unsqueeze(-2)
        Q.append(q)
        Us.append(h_times(H, q))
    Qa, Ua = torch.cat(Q, -1), torch.cat(Us, -1)
    ritz, Y = torch.linalg.eigh(Ua.mH @ Ua)                             # (K+1)S x (K+1)S, ascending
    ritz, Y = ritz.flip(-1)[..., :S].double(), Y.flip(-1)[..., :S]
    p = water_filling(ritz.clamp_min(0.0) / inst.noise_var.double().unsqueeze(-1), problem.power)
    return (Qa @ Y) * p.sqrt().to(Y.real.dtype).unsqueeze(-2)


@torch.no_grad()
def lanczos_one(problem, inst, iterations: int, x0: Optional[torch.Tensor] = None):
    """Single-stream Lanczos written for speed, the same solution as the block form: the three-term
    recurrence q_{k+1} beta_k = A q_k - alpha_k q_k - beta_{k-1} q_{k-1} (alpha_k = ||H q_k||^2: 2K + 1
    products with H or H^H) plus one classical Gram-Schmidt pass against the whole basis (two small
    products; without it float32 rounding costs Q its orthogonality once a Ritz value converges, and
    Rayleigh-Ritz then reads ghosts). Rayleigh-Ritz over Q is then the top eigenpair of the real
    tridiagonal T = tridiag(beta, alpha, beta): its eigenvalue from ``eigvalsh`` and its eigenvector
    by one step of inverse iteration, both in float64 (a batched ``eigh`` of 256 tiny matrices costs
    this CPU as much as two layers; T's own three-term recurrence for the eigenvector is cheaper
    still but unstable where a beta is small: it lost 99% of the quotient on a geometric spectrum).
    A direction whose residual is below 1e-5 ||H||_F^2 (an invariant subspace: a rank-one channel,
    n_rx < K + 1) ends the recurrence for that sample; T is then block diagonal, and the top
    eigenvalue is that of the leading block (the Krylov space itself). (B, n_tx, 1) complex64 at full
    power."""
    H = inst.H
    B, R, N = H.shape
    K = int(iterations)
    if K < 1:
        raise ValueError(f"lanczos needs iterations >= 1 (got {iterations})")
    w = problem.init(inst) if x0 is None else x0
    if w.shape[-1] != 1:
        raise ValueError(f"lanczos_one runs one stream (the start has {w.shape[-1]}); use lanczos")
    q = w.resolve_conj().mT * frob2(w).clamp_min(1e-30).rsqrt().view(-1, 1, 1)      # (B, 1, n_tx) row
    tol = 1e-5 * frob2(H)                                                 # ||A|| <= ||H||_F^2
    Q = H.new_zeros(B, K + 1, N)                                          # rows q_k^T
    Q[:, :1] = q
    alphas, betas = [], []
    u = h_times(H, q.mT)
    q_prev, b_prev = None, None
    for k in range(K):
        alpha = frob2(u)
        r = torch.view_as_real(h_adjoint_times(u, H).mT)                  # (A q_k)^T, real view
        r = torch.addcmul(r, torch.view_as_real(q), alpha.view(-1, 1, 1, 1), value=-1.0)
        if q_prev is not None:
            r = torch.addcmul(r, torch.view_as_real(q_prev), b_prev.view(-1, 1, 1, 1), value=-1.0)
        r = torch.view_as_complex(r)
        basis = Q[:, :k + 1]
        r = r - (r @ basis.mH) @ basis                                    # re-orthogonalised once
        beta = frob2(r).sqrt()
        live = beta > tol
        b_prev = torch.where(live, beta, 0.0)
        alphas.append(alpha)
        betas.append(b_prev)
        q_prev, q = q, r * torch.where(live, 1.0 / beta.clamp_min(1e-30), 0.0).view(-1, 1, 1)
        Q[:, k + 1:k + 2] = q
        u = h_times(H, q.mT)
    alphas.append(frob2(u))
    a = torch.stack(alphas, -1).double()                                  # (B, K + 1)
    b = torch.stack(betas, -1).double()                                   # (B, K)
    T = torch.diag_embed(a) + torch.diag_embed(b, 1) + torch.diag_embed(b, -1)
    lam = torch.linalg.eigvalsh(T)[..., -1]
    # its eigenvector by one step of inverse iteration from the all-ones vector, shifted 1e-10 above
    # the eigenvalue (LU with pivoting on a (K + 1)^2 system: a tenth of an eigh's cost here)
    sigma = lam + 1e-10 * lam.abs() + 1e-300
    eye = torch.eye(K + 1, dtype=T.dtype, device=T.device)
    y = torch.linalg.solve_ex(T - sigma.view(-1, 1, 1) * eye, torch.ones_like(a).unsqueeze(-1))[0].squeeze(-1)
    y = (y / torch.linalg.vector_norm(y, dim=-1, keepdim=True)).to(Q.real.dtype)
    x = (y.to(Q.dtype).unsqueeze(-2) @ Q).mT                              # (B, n_tx, 1)
    return x * (problem.power / frob2(x).clamp_min(1e-30)).sqrt().view(-1, 1, 1)


def default_step_grid() -> list:
    """Signed steps on a log grid, for the normalised gradient: +-[0.1 .. 1e4] and the power-iteration limit."""
    mags = torch.logspace(-1, 4, 41).tolist()
    return [-m for m in mags] + mags + [POWER_ITERATION_STEP]


def tune_fixed_step(problem, inst, ref, iterations: int, grid: Optional[Iterable[float]] = None,
                    momentum_grid: Iterable[float] = (0.0,)) -> Tuple[dict, float]:
    """The best fixed (step, momentum) for ``iterations`` of normalised PGD on ``inst`` (a validation
    set), by exhaustive sweep (signed steps by default). Returns (params, score)."""
    return tune_pgd(problem, inst, ref, iterations, grid if grid is not None else default_step_grid(), momentum_grid)


def run_tuned(problem, inst, params: dict, iterations: int):
    return solve(problem, inst, ProximalGradient(normalize=problem.default_scaling), params, iterations).x


def ista(problem, inst, iterations: int, trajectory: bool = False):
    return solve(problem, inst, ProximalGradient(normalize=problem.default_scaling), {"step": 1.0}, iterations, trajectory=trajectory)


def fista(problem, inst, iterations: int, trajectory: bool = False):
    return solve(problem, inst, ProximalGradient(extrapolation="nesterov", normalize=problem.default_scaling),
                 {"step": 1.0, "momentum": fista_momentum}, iterations, trajectory=trajectory)


# ---- multi-user downlink (mu_miso) ------------------------------------------------------------------
TUNE_BATCH = 512
PGA_STEP_GRID = torch.logspace(-2.5, 0.5, 25).tolist()


def wmmse(problem, inst, iterations: int, relaxation: float = 1.0):
    """WMMSE from the problem's initialisation (RZF), ``relaxation`` omega (1: the classical one)."""
    return solve(problem, inst, WMMSE(), {"relaxation": relaxation}, iterations).x


_TUNED: dict = {}


def validation_set(problem, size: int = TUNE_BATCH):
    """A fixed validation batch of ``problem`` with its reference (computed once per process),
    drawn from its own seed stream (never a test seed), on which the tuned baselines pick their constants."""
    from ..algorithms import evaluation_reference

    def draw():
        inst = problem.sample(size, generator(12345, "tune-baseline"))
        return inst, evaluation_reference(problem, inst)
    return _tuned(problem, ("validation", size), draw)


def _tuned(problem, key, tune):
    """Tune once per (problem signature and channel, baseline, depth, validation size) in this process."""
    ident = (repr(problem.describe()), key)
    if ident not in _TUNED:
        _TUNED[ident] = tune()
    return _TUNED[ident]


def _size(inst) -> int:
    """Validation size for tuning: TUNE_BATCH, or the test batch when that is smaller."""
    return min(TUNE_BATCH, inst.batch_size)


def wmmse_tuned(problem, inst, iterations: int):
    """WMMSE with the validation-best over-relaxation for this depth."""
    size = _size(inst)

    def tune():
        val, ref = validation_set(problem, size)
        return tune_wmmse(problem, val, ref, iterations, RELAXATIONS)[0]
    return wmmse(problem, inst, iterations, _tuned(problem, ("wmmse_relaxation", iterations, size), tune))


def pgd_tuned(problem, inst, iterations: int):
    """Normalised PGD with the validation-best fixed signed step and heavy-ball momentum for this depth
    (beamforming: the classical solver a learned beamformer has to beat at equal cost)."""
    size = _size(inst)

    def tune():
        val, ref = validation_set(problem, size)
        return tune_fixed_step(problem, val, ref, iterations, momentum_grid=PGD_MOMENTA)[0]
    return run_tuned(problem, inst, _tuned(problem, ("pgd", iterations, size), tune), iterations)


def pga_tuned(problem, inst, iterations: int):
    """Projected gradient ascent (scaled gradient, heavy-ball momentum) with the validation-best fixed
    step and momentum for this depth."""
    size = _size(inst)

    def tune():
        val, ref = validation_set(problem, size)
        return tune_pgd(problem, val, ref, iterations, PGA_STEP_GRID, MOMENTA)[0]
    return run_tuned(problem, inst, _tuned(problem, ("pga", iterations, size), tune), iterations)


# ---- wideband hybrid precoding (hybrid_precoding) ---------------------------------------------------
def hybrid_pga(problem, inst, iterations: int, params: dict, safeguard: bool = False):
    """Classical hybrid PGA (survey eq. 12, ``algorithms.hybrid_pga``) with fixed steps from the start
    (``safeguard``: the same iteration, returning per sample the best iterate by the objective)."""
    from ..algorithms.hybrid_pga import HybridPGA
    return solve(problem, inst, HybridPGA(safeguard=safeguard), params, iterations).x


def hybrid_pga_tuned(problem, inst, iterations: int):
    """Hybrid PGA with the validation-best fixed analog and digital steps and heavy-ball momentum for this
    depth (``tune_hybrid_pga`` over HYBRID_STEPS and HYBRID_MOMENTA, as the hybrid benchmark tunes it)."""
    from ..algorithms.tuning import HYBRID_MOMENTA, tune_hybrid_pga
    size = _size(inst)

    def tune():
        val, ref = validation_set(problem, size)
        best, _ = tune_hybrid_pga(problem, val, ref, iterations, momenta=HYBRID_MOMENTA)
        return best or {"step_analog": 0.1, "step_digital": 0.1, "momentum": 0.0}
    return hybrid_pga(problem, inst, iterations, _tuned(problem, ("hybrid_pga", iterations, size), tune))


@torch.no_grad()
def altmin(problem, inst, iterations: int):
    """Alternating minimisation towards the fully-digital precoder with phase extraction (PE-AltMin
    after Yu, Shen, Zhang and Letaief 2016, wideband: one analog matrix for all bands): from the
    SVD-phase analog precoder (the two-stage design), ``iterations`` rounds of W_d,b = pinv(W_a) F_b (least squares per band) and
    W_a = phase(sum_b F_b W_d,b^H); the digital readout is the best digital precoder for the final
    analog one (``digital_given_analog``: exact water-filling for logdet), which is stronger than
    PE-AltMin's rescaled least squares."""
    F = problem.fully_digital(inst)                                            # (B, NB, M, N)
    W_a = problem.analog_start(inst, "svd")
    Fs = problem.stack(F)                                                      # (B, M, NB N)
    for _ in range(iterations):
        D = torch.linalg.lstsq(W_a, Fs).solution if W_a.device.type == "cpu" else torch.linalg.pinv(W_a) @ Fs
        W_a = project_analog(Fs @ D.mH)
    return problem.pack_stacked(W_a, problem.digital_given_analog_stacked(W_a, inst))


def two_stage(problem, inst, iterations: int):
    """The two-stage design: phases of the top-L eigenvectors of sum_b H_b^H H_b and the best digital
    precoder for them (no iteration), whatever the model's init."""
    return problem.init(inst, "svd")


def subspace(problem, inst, iterations: int):
    """A unit-modulus analog precoder near the span of the top-L eigenvectors of sum_b H_b^H H_b
    (``SUBSPACE_ITERATIONS`` alternating projections from the SVD phases) and the best digital
    precoder for it (no further iteration), whatever the model's init. Where L is close to M the
    span is reached exactly and this is as good as any precoder confined to it."""
    return problem.init(inst, "subspace")


# ---- robust PCA (rpca) ---------------------------------------------------------------------------
def rpca_tuned(problem, inst, iterations: int):
    """The alternating RPCA solver (eqs. 25-27) with the validation-best step and geometric threshold
    schedule for this depth (``tuning.tune_rpca``)."""
    from ..algorithms.rpca import RPCAStep
    from ..algorithms.tuning import rpca_params, tune_rpca
    size = _size(inst)

    def tune():
        val, _ = validation_set(problem, size)
        best, _ = tune_rpca(problem, val, iterations)
        return best or {"step": 0.9, "threshold": problem.lam, "decay": problem.lam_decay}
    p = _tuned(problem, ("rpca", iterations, size), tune)
    return solve(problem, inst, RPCAStep(), rpca_params(p["step"], p["threshold"], p["decay"]), iterations).x


# ---- MIMO detection (detection) ------------------------------------------------------------------
def sic_tuned(problem, inst, iterations: int):
    """Soft interference cancellation with the validation-best damping and noise inflation for this
    depth (SER on the validation draw, ties broken by the cross-entropy): the classical detector
    given the two knobs the ``sic_damped`` layer learns."""
    from ..algorithms.detection import sic
    from ..algorithms.tuning import tune_sic
    size = _size(inst)
    b, d = _tuned(problem, ("sic", iterations, size), lambda: tune_sic(problem, validation_set(problem, size)[0], iterations))
    return sic(problem, inst, iterations, b, d)


def admm_tuned(problem, inst, iterations: int):
    """Classical ADMM (``algorithms.admm``: LASSO, or the box-relaxed detector) with the validation-best
    penalty and over-relaxation for this depth: the classical solver with the two knobs the ``admm``
    layer learns per layer."""
    from ..algorithms.admm import admm, tune_admm
    size = _size(inst)
    rho, alpha = _tuned(problem, ("admm", iterations, size),
                        lambda: tune_admm(problem, validation_set(problem, size)[0], iterations)[0])
    return admm(problem, inst, iterations, rho, alpha)


def ep_classical(problem, inst, iterations: int):
    """Expectation propagation with Sionna's damping 0.9 (``algorithms.ep``, our implementation)."""
    from ..algorithms.ep import expectation_propagation
    return expectation_propagation(problem, inst, iterations)


def ep_tuned(problem, inst, iterations: int):
    """Expectation propagation with the validation-best damping for this depth (the knob the
    ``learned_ep`` layer learns per iteration)."""
    from ..algorithms.ep import expectation_propagation, tune_ep
    size = _size(inst)
    b = _tuned(problem, ("ep", iterations, size), lambda: tune_ep(problem, validation_set(problem, size)[0], iterations)[0])
    return expectation_propagation(problem, inst, iterations, b)


def ml_if_small(problem, inst, iterations: int):
    """Exhaustive ML (per-user posteriors) where C^U is small enough, else None (not applicable)."""
    from ..algorithms.detection import ML_MAX_CANDIDATES, ml
    if problem.num_points ** inst.H.shape[-1] > ML_MAX_CANDIDATES:
        return None
    return ml(problem, inst)


def _kbest(problem, inst, iterations: int):
    from ..algorithms.detection import kbest
    return kbest(problem, inst, 16)


def _detnet_classical(problem, inst, iterations: int):
    from ..algorithms.detection import detnet_classical
    return detnet_classical(problem, inst, iterations)


def _sic(problem, inst, iterations: int):
    from ..algorithms.detection import sic
    return sic(problem, inst, iterations)


def _sic_mix(problem, inst, iterations: int):
    from ..algorithms.detection import sic
    return sic(problem, inst, iterations, exact_interferers=1)


# The classical solvers a problem can name in its ``classical`` declaration: name -> (label,
# solver(problem, inst, K) -> x), each run at the depth K of the model it is compared with.
CLASSICAL = {
    "power_iteration": ("power iteration", power_iteration),
    "lanczos": ("Lanczos (Rayleigh-Ritz, same mat-vecs)", lanczos),
    "pgd_tuned": ("PGD, tuned signed step and momentum", pgd_tuned),
    "ista": ("ISTA", lambda problem, inst, K: ista(problem, inst, K).x),
    "fista": ("FISTA", lambda problem, inst, K: fista(problem, inst, K).x),
    "wmmse": ("WMMSE", wmmse),
    "wmmse_tuned": ("WMMSE, tuned relaxation", wmmse_tuned),
    "pga_tuned": ("PGA, tuned step and momentum", pga_tuned),
    "rzf": ("RZF (closed form)", lambda problem, inst, K: problem.init(inst, "rzf")),
    "rzf_select": ("RZF with user selection (closed form)", lambda problem, inst, K: problem.init(inst, "rzf_select")),
    "zf": ("ZF (closed form)", lambda problem, inst, K: None if getattr(problem, "name", "") == "detection" and
           inst.H.shape[-1] > inst.H.shape[-2] else problem.init(inst, "zf")),
    "mrt": ("MRT (closed form)", lambda problem, inst, K: problem.init(inst, "mrt")),
    "hybrid_pga_tuned": ("PGA, tuned steps and momentum", hybrid_pga_tuned),
    "altmin": ("PE-AltMin + best digital", altmin),
    "two_stage": ("SVD-phase analog + best digital (closed form)", two_stage),
    "subspace": ("subspace analog (alternating projections) + best digital (closed form)", subspace),
    "rpca_tuned": ("alternating RPCA, tuned step and threshold schedule", rpca_tuned),
    "lmmse": ("LMMSE (closed form)", lambda problem, inst, K: problem.init(inst, "lmmse")),
    "sic": ("soft interference cancellation", _sic),
    "sic_tuned": ("soft interference cancellation, tuned damping and noise inflation", sic_tuned),
    "sic_mix": ("soft interference cancellation, strongest interferer exact", _sic_mix),
    "detnet_classical": ("DetNet's layer with its classical parameters (SIC without damping)",
                         _detnet_classical),
    "kbest": ("K-best, K = 16, Sionna (closed form)", _kbest),
    "ml": ("ML, exhaustive (closed form)", ml_if_small),
    "admm_tuned": ("ADMM, tuned penalty and relaxation", admm_tuned),
    "ep": ("expectation propagation, damping 0.9 (Sionna's)", ep_classical),
    "ep_tuned": ("expectation propagation, tuned damping", ep_tuned),
}
"""A solver may return None where it does not apply (exhaustive ML on a large system): no row."""


# ---- channel decoding (problems.decoding): BP on the 5G LDPC graph, ours and Sionna's ----------------
def _decoding_baselines():
    from ..algorithms.bp import bp_classical, bp_layered, minsum, sionna_bp
    return {"bp": ("BP (boxplus, flooding)", bp_classical),
            "bp_layered": ("BP (boxplus, layered, last row first)", bp_layered),
            "sionna_bp": ("Sionna LDPC5GDecoder (boxplus)", sionna_bp),
            "minsum": ("min-sum BP (flooding)", minsum)}


CLASSICAL.update(_decoding_baselines())
