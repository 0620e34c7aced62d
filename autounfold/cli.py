"""Command line: parse arguments, call ``autounfold.ops`` / the library, print. Every command has --help;
an ``AutoUnfoldError`` is a one-line ``error: ...`` on stderr and exit code 2."""
from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import AutoUnfoldError, ConfigError
from .seeding import SEED_MAX, SEED_MIN

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="autounfold: deep unfolding of iterative physical-layer solvers.")
csi_app = typer.Typer(no_args_is_help=True, help="CSI datasets in Parquet: write synthetic CSI, inspect a file.")
jobs_app = typer.Typer(no_args_is_help=True, help="Ray jobs on a cluster: list, status, logs, stop.")
app.add_typer(csi_app, name="csi")
app.add_typer(jobs_app, name="jobs")
console = Console()
SET_HELP = "override a key, e.g. --set model.num_layers=8"
ADDRESS_HELP = "Ray dashboard address (default RAY_ADDRESS, else http://127.0.0.1:8265)"
URI_HELP = "MLflow tracking URI (default MLFLOW_TRACKING_URI, else sqlite under ./mlruns)"


def command(group: typer.Typer, name: Optional[str] = None):
    """Register a command; the CLI boundary: an error raised on purpose is one line on stderr, exit 2."""
    def register(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except AutoUnfoldError as err:
                typer.echo(f"error: {err}", err=True)
                raise typer.Exit(2)
        return group.command(name)(wrapper)
    return register


def _table(title: str, rows: List[dict], columns: List[tuple]) -> Table:
    t = Table(title=title)
    for head, _, _ in columns:
        t.add_column(head)
    for r in rows:
        t.add_row(*[fmt.format(r[key]) if r.get(key) is not None else "—" for _, key, fmt in columns])
    return t


def _choices(text: str, allowed, option: str) -> list:
    """A comma-separated list of names, each one of ``allowed``; ConfigError naming ``option`` otherwise."""
    names = [v.strip() for v in text.split(",") if v.strip()]
    if not names or any(v not in allowed for v in names):
        raise ConfigError(f"{option}: choose among {', '.join(allowed)} (got {text!r})")
    return names


def _ints(text: str, what: str) -> List[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{what}: comma-separated integers expected (got {text!r})") from None
    if not values:
        raise ConfigError(f"{what}: at least one integer expected (got {text!r})")
    return values


@command(app)
def train(config: str = typer.Argument(..., help="experiment YAML, or preset:auto_pgd / preset:lista / preset:mu_miso / preset:hybrid"),
          out: Path = typer.Option(..., "--out", help="model directory to write (config.yaml, weights.pt, meta.json)"),
          set_: List[str] = typer.Option([], "--set", help=SET_HELP),
          device: str = typer.Option("cpu", help="torch device"),
          quiet: bool = typer.Option(False, help="no progress bar"),
          overwrite: bool = typer.Option(False, "--overwrite", help="replace --out even if it is not an autounfold model")):
    """Train one unfolded model, evaluate it on the test stream, save it."""
    from .ops.experiments import train_experiment
    try:
        result = train_experiment(config, out, set_, device, progress=not quiet, overwrite=overwrite)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: training stopped; nothing was written to {out}", err=True)
        raise typer.Exit(130)
    console.print_json(json.dumps(result))


@command(app)
def evaluate(model_dir: str = typer.Argument(..., help="a model directory (from train or search), or models:/NAME@ALIAS"),
             scenario: List[str] = typer.Option(["nominal"], help="scenarios the model's problem declares "
                                                "(beamforming: nominal, iid, as0..as60, ntx16..ntx256, nrx1..nrx32, rxcorr5, rxcorr9, lowsnr, snr-10, snr40; "
                                                "mu_miso: nominal, 8x4, 16x8, 64x16, snr0, snr10, snr20, snr30, correlated)"),
             batch: int = typer.Option(2048, min=1, help="test instances per scenario"),
             seed: int = typer.Option(1, min=SEED_MIN, max=SEED_MAX, help="seed of the test stream"),
             json_out: Optional[Path] = typer.Option(None, "--json", help="also write the results as JSON"),
             set_: List[str] = typer.Option([], "--set", help="change the problem on top of every scenario, "
                                            "e.g. --set problem.channel.n_tx=128 (the learned parameters are "
                                            "applied unchanged)"),
             tracking_uri: Optional[str] = typer.Option(None, help=URI_HELP)):
    """Evaluate a saved model (same learned parameters) against the optimum and the classical solvers
    its problem declares, at the model's depth."""
    from . import load
    from .evaluation.evaluate import evaluate_model
    if json_out is not None and (json_out.is_dir() or not json_out.parent.is_dir()):
        raise ConfigError(f"--json {json_out}: " + ("is a directory" if json_out.is_dir() else
                                                    f"its directory {json_out.parent} does not exist"))
    model = load(model_dir, tracking_uri=tracking_uri)
    rows = evaluate_model(model, scenario, batch, seed, overrides=set_)
    keys = [k for k in model.problem.metrics if k in rows[0]]
    cols = [("scenario", "scenario", "{}"), ("method", "method", "{}")] + \
        [(k, k, "{}" if isinstance(rows[0][k], bool) else "{:.4f}") for k in keys]
    console.print(_table(f"evaluation of {model_dir}", rows, cols))
    if json_out:
        json_out.write_text(json.dumps(rows, indent=2))


@command(app)
def benchmark(out: Path = typer.Option(Path("results/benchmark"), help="directory for benchmark.json / .md / PNGs"),
              steps: int = typer.Option(400, help="training steps per Auto-PGD model"),
              depths: str = typer.Option("3,5,8,12", help="comma-separated depths"),
              layers: str = typer.Option("step,signed,momentum,hybrid", help="comma-separated layer types"),
              test_batch: int = typer.Option(2048, help="test channels"),
              repeats: int = typer.Option(20, help="latency repetitions"),
              lista_steps: int = typer.Option(1500, help="training steps per LISTA model (0 skips the LISTA table)"),
              lista_large: bool = typer.Option(True, help="also the N=500, M=250 LISTA setting"),
              seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX), quiet: bool = typer.Option(False)):
    """Unfolded vs classical on a fixed test set: quality, latency, robustness, LISTA; JSON + Markdown + plots."""
    from .evaluation.benchmark import run_benchmark
    ls = [v.strip() for v in layers.split(",") if v.strip()]
    run_benchmark(out, steps=steps, depths=_ints(depths, "--depths"), layers=ls, test_batch=test_batch,
                  repeats=repeats, seed=seed, lista_steps=lista_steps, lista_large=lista_large, quiet=quiet)
    console.print((out / "benchmark.md").read_text(), markup=False, highlight=False)


@command(app, "benchmark-auto-pgd")
def benchmark_auto_pgd(out: Path = typer.Option(Path("results/auto_pgd"), help="directory for auto_pgd_benchmark.json / .md"),
                       steps: int = typer.Option(400, min=0, help="training steps per model (the preset's recipe)"),
                       test_batch: int = typer.Option(1024, min=16, help="test channels per condition"),
                       latency_batch: int = typer.Option(256, min=1, help="batch of the latency table"),
                       repeats: int = typer.Option(100, min=1, help="latency repetitions"),
                       streams: str = typer.Option("2,4", help="comma-separated stream counts of the multi-stream table"),
                       device: str = typer.Option("cpu", help="where the latency table runs: cpu, cuda or cuda:N"),
                       seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX), quiet: bool = typer.Option(False)):
    """Is the flagship beamformer safe to deploy? The preset model unchanged on every declared and some
    unlisted conditions (beside power iteration, Lanczos, tuned PGD and the unsafeguarded signed layer),
    latency against the closed form and PGD-200 through the same code path with GFLOP/s against a
    measured peak, multi-stream, the per-antenna reference, and 3GPP UMi / UMa / CDL test users
    (pool_seed 1) for the preset and the same recipe trained on UMi (pool_seed 0); JSON + Markdown."""
    from .evaluation.auto_pgd_benchmark import run_auto_pgd_benchmark
    stream_list = _ints(streams, "--streams")
    if min(stream_list) < 1:
        raise ConfigError(f"--streams: stream counts must be >= 1 (got {streams!r})")
    run_auto_pgd_benchmark(out, steps=steps, test_batch=test_batch, latency_batch=latency_batch, repeats=repeats,
                           streams=stream_list, seed=seed, quiet=quiet, device=device)


@command(app, "benchmark-mu-miso")
def benchmark_mu_miso(out: Path = typer.Option(Path("results/mu_miso"), help="directory for mu_miso_benchmark.json / .md / PNGs"),
                      steps: int = typer.Option(1500, min=0, help="training steps per model (the preset's recipe)"),
                      depth: int = typer.Option(5, min=1, help="depth of the models and of the equal-depth baselines"),
                      layers: str = typer.Option("uwmmse,uwmmse_gnn,momentum,momentum+snr4,momentum+snr4+cond5",
                                                 help="comma-separated layer types, each optionally +snrN and / or +condN: "
                                                 "its per-layer scalars conditioned on the SNR / the channel's condition "
                                                 "number, N knots"),
                      sizes: str = typer.Option("8x4,16x8,64x16", help="comma-separated n_tx x users"),
                      depths: str = typer.Option("1,2,3,5,8", help="depths of the depth curve (middle size)"),
                      test_batch: int = typer.Option(1024, min=16, help="test channels per cell"),
                      repeats: int = typer.Option(20, min=1, help="latency repetitions"),
                      sections: str = typer.Option("main,3gpp", help="comma-separated: main (every table but the 3GPP "
                                                   "one), 3gpp (16 x 8 trained on Rayleigh and on UMi pool_seed 0, tested "
                                                   "on UMi / UMa pool_seed 1; alone: a few minutes, mu_miso_3gpp.json / .md)"),
                      seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX), quiet: bool = typer.Option(False)):
    """MU-MISO sum rate: unfolded WMMSE / PGA against WMMSE, tuned WMMSE, tuned PGA and RZF/ZF/MRT at
    equal depth, over SNR, on unseen correlated channels, against latency, and on 3GPP UMi / UMa
    channels (trained on Rayleigh and on UMi); JSON + Markdown + plots."""
    from .evaluation.mu_miso_benchmark import SECTIONS, check_variants, run_mu_miso_benchmark
    section_list = _choices(sections, SECTIONS, "--sections")
    ls = [v.strip() for v in layers.split(",") if v.strip()]
    check_variants(ls, "--layers")
    try:
        size_list = [tuple(int(x) for x in v.strip().lower().split("x")) for v in sizes.split(",") if v.strip()]
        if not size_list or any(len(t) != 2 or min(t) < 1 for t in size_list):
            raise ValueError
    except ValueError:
        raise ConfigError(f"--sizes {sizes!r}: expected comma-separated NTXxUSERS, e.g. 8x4,16x8") from None
    run_mu_miso_benchmark(out, steps=steps, depth=depth, layers=ls, test_batch=test_batch, repeats=repeats, seed=seed,
                          sizes=size_list, depths=_ints(depths, "--depths"), quiet=quiet, sections=section_list)
    md = "mu_miso_benchmark.md" if "main" in section_list else "mu_miso_3gpp.md"
    console.print((out / md).read_text(), markup=False, highlight=False)


@command(app, "benchmark-hybrid")
def benchmark_hybrid(out: Path = typer.Option(Path("results/hybrid"), help="directory for hybrid_benchmark.json / .md / PNGs"),
                     steps: int = typer.Option(300, min=0, help="training steps per model (the preset's recipe)"),
                     depth: int = typer.Option(5, min=1, help="depth of the unfolded models"),
                     layers: str = typer.Option("hybrid_pga,hybrid_pga_band,hybrid_pga_momentum",
                                                help="comma-separated layer types (the first is the one transferred)"),
                     antennas: str = typer.Option("8,16,32", help="antenna counts of the scalability table"),
                     bands: str = typer.Option("4,16", help="band counts of the scalability table"),
                     test_batch: int = typer.Option(1024, min=16, help="test channels"),
                     repeats: int = typer.Option(20, min=1, help="latency repetitions"),
                     sum_rate: bool = typer.Option(True, help="also the per-user sum-rate objective"),
                     seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX), quiet: bool = typer.Option(False)):
    """Wideband hybrid precoding: unfolded PGA against classical PGA tuned at 1-100 iterations and to
    convergence, PE-AltMin, the two-stage and the subspace designs (% of the fully-digital bound), the nominal model
    at other antenna and band counts against models trained there, unseen conditions, latency and the
    learned steps; JSON + Markdown + plots."""
    from .evaluation.hybrid_benchmark import run_hybrid_benchmark
    from .plugins import LAYERS
    ls = [v.strip() for v in layers.split(",") if v.strip()]
    if not ls:
        raise ConfigError("--layers: give at least one layer type")
    for name in ls:
        if name not in LAYERS or not LAYERS.get(name).applies_to("hybrid_precoding"):
            raise ConfigError(f"--layers: {name!r} does not apply to hybrid_precoding; use "
                              f"{', '.join(LAYERS.select(lambda d: d.applies_to('hybrid_precoding')))}")
    ants, bnds = _ints(antennas, "--antennas") if antennas.strip() else [], _ints(bands, "--bands") if bands.strip() else []
    if bnds and "n_bands" in LAYERS.get(ls[0]).fixes:
        raise ConfigError(f"--layers: the first layer type is the one moved to other sizes, and {ls[0]!r} fixes "
                          "n_bands; put a dimension-free one first or give --bands ''")
    preset_users = 6
    if any(m < preset_users for m in ants) or any(b < 1 for b in bnds):
        raise ConfigError(f"--antennas must be >= {preset_users} (the preset's users) and --bands >= 1 "
                          f"(got {antennas!r}, {bands!r})")
    run_hybrid_benchmark(out, steps=steps, depth=depth, layers=ls, test_batch=test_batch, repeats=repeats, seed=seed,
                         antennas=ants, bands=bnds, sum_rate=sum_rate, quiet=quiet)
    console.print((out / "hybrid_benchmark.md").read_text(), markup=False, highlight=False)


@command(app, "benchmark-lista")
def benchmark_lista(out: Path = typer.Option(Path("results/lista"), help="directory for lista_benchmark.json / LISTA_RESULTS.md / PNG"),
                    settings: str = typer.Option("textbook,classic", help="comma-separated: textbook (N=50, M=25, s=5, "
                                                 "20 dB), classic (N=500, M=250, p=0.1, 40 dB)"),
                    layers: str = typer.Option("alista,lista_cpss", help="comma-separated layer types of the lasso problem"),
                    steps: int = typer.Option(None, min=1, help="training steps per model (default: the preset's)"),
                    textbook_depths: str = typer.Option("8,16", help="depths trained on the textbook setting"),
                    classic_depths: str = typer.Option("16", help="depths trained on the classic setting"),
                    test_batch: int = typer.Option(2000, min=16, help="test signals"),
                    repeats: int = typer.Option(20, min=1, help="latency repetitions"),
                    seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX), quiet: bool = typer.Option(False)):
    """Sparse recovery: ALISTA, LISTA-CPSS (and any other lasso layer) trained with preset:lista
    against ISTA / FISTA with lambda tuned per iteration count, the converged LASSO and the oracle-
    support bound; ISTA / FISTA iterations each network matches; training time and latency."""
    from .evaluation.lista_benchmark import SETTINGS, run_lista_benchmark
    from .plugins import LAYERS
    names = [v.strip() for v in settings.split(",") if v.strip()]
    bad = [v for v in names if v not in SETTINGS]
    if bad or not names:
        raise ConfigError(f"--settings: choose among {', '.join(SETTINGS)} (got {settings!r})")
    ls = [v.strip() for v in layers.split(",") if v.strip()]
    fits = LAYERS.select(lambda d: d.applies_to("lasso"))
    if not ls or any(v not in fits for v in ls):
        raise ConfigError(f"--layers: choose among {', '.join(fits)} (got {layers!r})")
    depths = {"textbook": _ints(textbook_depths, "--textbook-depths"), "classic": _ints(classic_depths, "--classic-depths")}
    if any(d < 1 for v in depths.values() for d in v) or any(not depths[n] for n in names):
        raise ConfigError("--textbook-depths / --classic-depths: give positive integers for every setting run")
    run_lista_benchmark(out, settings=names, layers=ls, steps=steps, depths=depths, test_batch=test_batch,
                        repeats=repeats, seed=seed, quiet=quiet)
    console.print((out / "LISTA_RESULTS.md").read_text(), markup=False, highlight=False)


@command(app, "benchmark-detection")
def benchmark_detection(out: Path = typer.Option(Path("results/detection"),
                                                 help="directory for detection_benchmark.json / DETECTION_RESULTS.md / PNGs"),
                        cases: str = typer.Option("4x4_qpsk,8x8_16qam,8x8_16qam_umi,4x4_qpsk_adc3",
                                                  help="comma-separated cases (8x8_16qam_umi also applies the "
                                                       "8x8_16qam networks when that case runs first)"),
                        networks: str = typer.Option("deepsic,deepsic_e2e,deepsic_mix,detnet,sic_damped",
                                                     help="comma-separated networks"),
                        steps: int = typer.Option(None, min=1, help="training steps per network (default: the presets'; "
                                                  "every network still ends with its refine, up to 12 min each on 8x8)"),
                        test_size: int = typer.Option(20000, min=100, help="test symbol vectors per SNR point"),
                        repeats: int = typer.Option(10, min=1, help="latency repetitions"),
                        seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX), quiet: bool = typer.Option(False)):
    """SER-vs-SNR of DeepSIC, DetNet and the classical detectors (ZF, LMMSE, SIC, mixture SIC, K-best, EP, ML) on
    i.i.d. Rayleigh, 3GPP UMi and behind 3-bit ADCs; SNR at SER 1e-2, latency, the bars."""
    from .evaluation.detection_benchmark import CASES, NETWORKS, run_detection_benchmark
    names, nets = _choices(cases, CASES, "--cases"), _choices(networks, NETWORKS, "--networks")
    r = run_detection_benchmark(out, cases=names, networks=nets, steps=steps, test_size=test_size, repeats=repeats,
                                seed=seed, quiet=quiet)
    console.print(f"wrote {out}/DETECTION_RESULTS.md ({len(r['cases'])} cases)", highlight=False)


@command(app, "benchmark-textbook")
def benchmark_textbook(ctx: typer.Context, out: Path = typer.Option(Path("results/textbook"),
                                                help="directory for textbook_benchmark.json / TEXTBOOK_RESULTS.md / PNGs"),
                       sections: str = typer.Option("lasso,admm_detection,ep", help="comma-separated sections"),
                       steps: int = typer.Option(None, min=1, help="training steps per network (default: the presets')"),
                       test_size: int = typer.Option(20000, min=100, help="test symbol vectors per SNR point (and LASSO signals)"),
                       repeats: int = typer.Option(10, min=1, help="latency repetitions"),
                       seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX), quiet: bool = typer.Option(False),
                       refresh_quotes: bool = typer.Option(
                           False, "--refresh-quotes", help="re-read only the rows quoted from the detection benchmark "
                           "(--detection-json) into the result already in --out; runs nothing else"),
                       detection_json: Path = typer.Option(None, help="with --refresh-quotes: the detection benchmark's "
                                                           "JSON (default: benchmarks/detection_benchmark.json)")):
    """ADMM-Net (LASSO, box-relaxed detection) and learned EP (8x8 16-QAM, also under a mismatched SNR)
    against classical ADMM and EP at equal and twice the iterations with tuned knobs; the bars."""
    from .evaluation.textbook_benchmark import DETECTION_JSON, SECTIONS, refresh_quotes as refresh, run_textbook_benchmark
    if detection_json is not None and not refresh_quotes:
        raise ConfigError("--detection-json is read by --refresh-quotes only (a full run quotes the committed one)")
    if refresh_quotes:
        source = ctx.get_parameter_source          # what was typed, whatever the defaults are
        given = ["--" + name.replace("_", "-") for name in ("sections", "steps", "test_size", "repeats", "seed")
                 if source(name) is not None and source(name).name != "DEFAULT"]
        if given:
            raise ConfigError(f"--refresh-quotes runs nothing, so it takes --out alone (got {', '.join(given)})")
        refresh(out, detection_json or DETECTION_JSON)
        console.print(f"re-read the detection benchmark's rows into {out}/TEXTBOOK_RESULTS.md", highlight=False)
        return
    names = _choices(sections, SECTIONS, "--sections")
    r = run_textbook_benchmark(out, sections=names, steps=steps, test_size=test_size, repeats=repeats, seed=seed,
                               quiet=quiet)
    console.print(f"wrote {out}/TEXTBOOK_RESULTS.md ({len(r['sections'])} sections)", highlight=False)


@command(app, "benchmark-decoding")
def benchmark_decoding(out: Path = typer.Option(Path("results/decoding"),
                                                help="directory for decoding_benchmark.json / DECODING_RESULTS.md / PNGs"),
                       codes: str = typer.Option("n128,n512", help="comma-separated codes: n128 (128, 64), n512 (512, 256)"),
                       steps: int = typer.Option(None, min=1, help="training steps per network (default: flooding 500 / layered 1000 "
                                                 "for n128, 200 / 300 for n512)"),
                       test_blocks: int = typer.Option(None, min=100, help="test blocks per Eb/N0 point (default: 10000 for n128, 5000 for n512)"),
                       quick: bool = typer.Option(False, help="smoke run: 30 steps, 500 blocks, 4 Eb/N0 points"),
                       quiet: bool = typer.Option(False)):
    """BER / BLER vs Eb/N0 of classical BP (flooding and layered, 5, 10, 20 iterations, Sionna's LDPC5GDecoder as a
    check) and neural (weighted) BP-5 in both schedules on the 5G LDPC codes (128, 64) and (512, 256); gaps at BLER
    1e-2 / 1e-3, per-iteration BLER, learned weights, latency, the bars."""
    from .evaluation.decoding_benchmark import CODES, run_decoding_benchmark
    names = _choices(codes, CODES, "--codes")
    r = run_decoding_benchmark(out, codes=names, steps=steps, test_blocks=test_blocks, quick=quick, quiet=quiet)
    console.print(f"wrote {out}/DECODING_RESULTS.md ({len(r['codes'])} codes)", highlight=False)


@command(app, "benchmark-rpca")
def benchmark_rpca(out: Path = typer.Option(Path("results/rpca"), help="directory for rpca_benchmark.json / RPCA_RESULTS.md / PNGs"),
                   cases: str = typer.Option("a,b", help="comma-separated: a (the solver knows Psi), b (a noisy Psi)"),
                   n: int = typer.Option(100, min=10, help="n1 = n2 (the survey's size is 1000; see the README for its cost)"),
                   mismatch: float = typer.Option(0.3, help="case (b): relative error of the solver's Psi (> 0)"),
                   layers: str = typer.Option("rpca_hyper,rpca_objective,rpca_correction,rpca_dnn",
                                              help="comma-separated variants (one per paradigm)"),
                   steps: int = typer.Option(None, min=1, help="training steps per model (default: the preset's)"),
                   test_batch: int = typer.Option(128, min=4, help="test matrices"),
                   repeats: int = typer.Option(10, min=1, help="latency repetitions"),
                   cost_only: bool = typer.Option(False, help="only time one training step and one forward pass per "
                                                  "variant at --n (writes rpca_cost.json): for sizes too big to run here"),
                   seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX), quiet: bool = typer.Option(False)):
    """The survey's RPCA comparative study (Fig. 5): the classical alternating solver (tuned per
    iteration count and to convergence) against its four unfolded variants at K = 10, with the true
    and with a mismatched Psi; NMSE per iteration, learned values, training time, latency."""
    from .evaluation.rpca_benchmark import CASES, VARIANTS, run_rpca_benchmark
    names, ls = _choices(cases, CASES, "--cases"), _choices(layers, VARIANTS, "--layers")
    if not (mismatch > 0 and math.isfinite(mismatch)):
        raise ConfigError(f"--mismatch must be a positive number (got {mismatch})")
    if cost_only:
        from .evaluation.rpca_benchmark import step_cost
        console.print_json(json.dumps(step_cost(out, n, ls, repeats=repeats, seed=seed, quiet=quiet)))
        return
    run_rpca_benchmark(out, cases=names, n=n, mismatch=mismatch, layers=ls, steps=steps, test_batch=test_batch,
                       repeats=repeats, seed=seed, quiet=quiet)
    console.print((out / "RPCA_RESULTS.md").read_text(), markup=False, highlight=False)


def _print_search(outcome, spec) -> None:
    s = outcome.summary
    console.print(f"leaderboard: {spec.name} ({s['num_trials']} trials, {s['seconds']:.0f} s)\n"
                  + (outcome.out_dir / "leaderboard.md").read_text()
                  + f"results: {outcome.out_dir}/trials.parquet, leaderboard.md, pareto.png, summary.json"
                  + (", best_model/" if outcome.best_model else ""), markup=False, highlight=False)
    if outcome.registered:
        r = outcome.registered
        console.print(f"registered {r['name']} version {r['version']} as @{r['alias']}: "
                      f"autounfold.load(\"{r['uri']}\")", highlight=False)
    if outcome.run_id:
        console.print(f"MLflow: search run {outcome.run_id}", highlight=False)


@command(app)
def search(spec_path: str = typer.Argument(..., metavar="SPEC", help="search-space YAML, e.g. search_spaces/auto_pgd.yaml, "
                                           "or models:/NAME/VERSION (the space that version was found with)"),
           out: Optional[Path] = typer.Option(None, help="result directory (default runs/search/<spec name>)"),
           set_: List[str] = typer.Option([], "--set", help="override a spec key, e.g. --set budget.num_samples=60"),
           address: Optional[str] = typer.Option(None, help="Ray cluster address; default: start Ray on this machine"),
           resume: bool = typer.Option(False, "--resume", help="continue an interrupted search in --out"),
           warm_start: Optional[str] = typer.Option(None, "--warm-start", help="an earlier search: its result "
                                                    "directory or MLflow run id"),
           tracking_uri: Optional[str] = typer.Option(None, help=URI_HELP),
           track: bool = typer.Option(True, "--track/--no-track", help="log to MLflow"),
           register: Optional[str] = typer.Option(None, help="registered model name (default: the spec name)"),
           no_register: bool = typer.Option(False, "--no-register", help="do not register the best model"),
           cpus: Optional[int] = typer.Option(None, min=1, help="CPUs of the embedded Ray (default: all)"),
           dry_run: bool = typer.Option(False, "--dry-run", help="validate the spec, print its space, start nothing")):
    """TPE search over an unfolded model's depth, parameterisation and training recipe on Ray Tune."""
    from .ops.search import load_search_spec, search as run
    spec = load_search_spec(spec_path, set_, tracking_uri)
    if dry_run:
        console.print(f"{spec_path}: valid; sha256 {spec.sha256}; {spec.budget.num_samples} trials "
                      f"({spec.budget.algorithm}); dimensions: {', '.join(spec.labels())}", highlight=False)
        return
    outcome = run(spec, out or Path("runs/search") / spec.name, address=address, resume=resume, warm_start=warm_start,
                  tracking_uri=tracking_uri, track=track, console=console, num_cpus=cpus,
                  register=None if no_register or not track else (register or spec.name))
    _print_search(outcome, spec)
    if outcome.summary.get("interrupted"):
        typer.echo(f"interrupted: {outcome.summary['counts'].get('ok', 0)} of {spec.budget.num_samples} trials finished; "
                   f"continue with: autounfold search {spec_path} --out {outcome.out_dir} --resume"
                   + "".join(f" --set {s}" for s in set_), err=True)
        raise typer.Exit(130)
    if not outcome.summary["counts"].get("ok"):
        typer.echo("error: no trial finished successfully (see the reasons in trials.parquet)", err=True)
        raise typer.Exit(1)


@command(app)
def export(model: str = typer.Argument(..., help="a model directory, or models:/NAME@ALIAS"),
           out: Path = typer.Option(..., "--out", help="file to write, e.g. model.pt / model.pt2 (a .json beside it describes the interface)"),
           fmt: str = typer.Option("torchscript", "--format", help="torchscript (.pt, torch.jit.load) or torch.export "
                                   "(.pt2, torch.export.load(...).module()); both real-valued: view_as_real inputs/outputs"),
           tracking_uri: Optional[str] = typer.Option(None, help=URI_HELP)):
    """Export a trained model for deployment; the exported module is checked against the eager one."""
    from . import load
    from .deploy import EXPORTERS
    if fmt not in EXPORTERS:
        raise ConfigError(f"--format: unknown format {fmt!r} (allowed: {', '.join(map(repr, EXPORTERS))})")
    from .deploy.export import real_interface
    net = load(model, tracking_uri=tracking_uri)
    path = EXPORTERS[fmt](net, out)
    io = real_interface(net.problem)
    console.print(f"wrote {path} and {path}.json ({fmt}): {', '.join(io['output'])} = module({', '.join(io['inputs'])})",
                  highlight=False)


@command(csi_app, "write")
def csi_write(out: Path = typer.Option(..., "--out", help="Parquet file to write"),
              rows: int = typer.Option(1024, min=1, help="number of channel realisations"),
              config: str = typer.Option("preset:auto_pgd", help="experiment YAML whose problem.channel is drawn from"),
              set_: List[str] = typer.Option([], "--set", help="e.g. --set problem.channel.angular_spread_deg=40"),
              seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX, help="seed of the drawn channels"),
              cell_id: Optional[str] = typer.Option(None, help="cell id written in every row"),
              start_ms: Optional[int] = typer.Option(None, help="timestamp of the first row (ms since epoch; default now)"),
              interval_ms: int = typer.Option(1, help="milliseconds between rows")):
    """Draw synthetic CSI from a channel model and write it in the autounfold CSI schema."""
    from .ops.experiments import write_synthetic_csi
    r = write_synthetic_csi(out, rows, config, set_, seed, cell_id, start_ms, interval_ms)
    console.print(f"wrote {r['rows']} channels ({r['channel']}) to {r['path']}", highlight=False)


@command(csi_app, "inspect")
def csi_inspect(path: Path = typer.Argument(..., help="a CSI Parquet file")):
    """Validate a CSI file and print a JSON summary (rows, shape, SNR range, time span, ids)."""
    from .channels.parquet import inspect_csi
    console.print_json(json.dumps(inspect_csi(path)))


@command(app)
def promote(name: str = typer.Argument(..., help="registered model name"),
            canary: float = typer.Option(0.05, help="share of the traffic batches sent to the challenger"),
            batches: int = typer.Option(200, min=1, help="traffic batches in the canary"),
            batch_size: int = typer.Option(64, min=1, help="instances per batch"),
            tolerance: Optional[float] = typer.Option(None, help="promote unless the challenger's score is lower by "
                                                      "more than this, in score units (default: the problem's; "
                                                      "beamforming 0.05 points of the optimum, detection 0.002 SER, decoding 0.005 BLER)"),
            source: List[str] = typer.Option([], "--source", help="CSI Parquet file(s) as traffic (default: the "
                                             "champion's own problem / channel model)"),
            set_: List[str] = typer.Option([], "--set", help="change the synthetic traffic, e.g. "
                                           "--set problem.channel.angular_spread_deg=40"),
            seed: int = typer.Option(0, min=SEED_MIN, max=SEED_MAX, help="seed of the routing and of synthetic traffic"),
            tracking_uri: Optional[str] = typer.Option(None, help=URI_HELP)):
    """Canary the 'challenger' version against the 'champion' and move the aliases (or roll back)."""
    from .ops.promote import promote as run
    traffic = None
    if source:
        from .channels.parquet import ParquetSource
        traffic = ParquetSource(source)
    record = run(name, canary=canary, batches=batches, batch_size=batch_size, tolerance=tolerance, source=traffic,
                 traffic_overrides=set_, seed=seed, tracking_uri=tracking_uri, console=console)
    console.print_json(json.dumps(record, default=str))


@command(app)
def monitor(model: str = typer.Option(..., "--model", help="NAME@ALIAS in the registry (e.g. auto_pgd@champion)"),
            source: List[str] = typer.Option(..., "--source", help="CSI Parquet file(s), or "
                                             "synthetic:angular_spread=15->40,windows=12[,at=3], or "
                                             "synthetic:channel=umi->uma,windows=8[,at=3][,pool_seed=1]"),
            window: int = typer.Option(512, help="channels per window"),
            events: Optional[Path] = typer.Option(None, help="event log (JSON lines; default runs/monitor/NAME/events.jsonl)"),
            research: bool = typer.Option(True, "--research/--no-research", help="run the warm-started re-search on a trigger"),
            research_trials: int = typer.Option(16, min=2, help="trials of a triggered re-search"),
            research_set: List[str] = typer.Option([], "--research-set", help="override for the re-search spec, "
                                                   "e.g. base.training.steps=200"),
            set_: List[str] = typer.Option([], "--set", help="monitor setting, e.g. --set covariance_threshold=0.2"),
            address: Optional[str] = typer.Option(None, help="submit a triggered re-search as a Ray job to this "
                                                  "cluster (default: run it in this process)"),
            tracking_uri: Optional[str] = typer.Option(None, help=URI_HELP)):
    """Watch CSI windows for drift (covariance shift, shadow metric, parameter drift, gradient norm);
    a covariance shift triggers, once per model version, a warm-started re-search -> new challenger."""
    from .ops.monitor import run_monitor

    from .monitoring.monitor import window_line
    r = run_monitor(model, source, window=window, events=events, research=research, research_trials=research_trials,
                    research_set=research_set, settings=set_, address=address, tracking_uri=tracking_uri,
                    console=console, on_window=lambda rec: console.print(window_line(rec), highlight=False))
    recs = r["records"]
    console.print(f"{len(recs)} windows, {sum(len(x['alerts']) for x in recs)} alerts, "
                  f"{sum('trigger' in x for x in recs)} trigger(s); events in {r['events']}", highlight=False)


@command(app)
def submit(spec_path: Path = typer.Argument(..., metavar="JOB", help="job spec, e.g. jobs/search.yaml"),
           address: Optional[str] = typer.Option(None, help=ADDRESS_HELP),
           set_: List[str] = typer.Option([], "--set", help="override a spec key, e.g. --set entrypoint_num_cpus=2"),
           wait: bool = typer.Option(False, "--wait", help="follow the job to its end; exit 1 unless it SUCCEEDED"),
           timeout: float = typer.Option(3600.0, help="seconds --wait waits")):
    """Submit a declarative job spec to a Ray cluster (token authentication honoured)."""
    from .jobs import job_logs, load_job_spec, submit_job, wait_for_job
    spec = load_job_spec(spec_path, set_)
    job_id = submit_job(spec, address)
    console.print(f"submitted {spec.name} as {job_id}: {spec.entrypoint}", highlight=False)
    if not wait:
        return
    status = wait_for_job(job_id, address, timeout, on_status=lambda st, t: console.print(
        f"[{t:6.0f} s] {job_id} {st}", highlight=False))
    console.print(job_logs(job_id, address)[-4000:], markup=False, highlight=False)
    if status != "SUCCEEDED":
        typer.echo(f"error: job {job_id} ended {status}", err=True)
        raise typer.Exit(1)


@command(jobs_app, "list")
def jobs_list(address: Optional[str] = typer.Option(None, help=ADDRESS_HELP)):
    """All jobs of the cluster with their status."""
    from .jobs import list_jobs
    rows = [{**j, "entrypoint": j["entrypoint"][:70]} for j in list_jobs(address)]
    console.print(_table("Ray jobs", rows, [(k, k, "{}") for k in ("id", "status", "job", "entrypoint")]))


@command(jobs_app, "status")
def jobs_status(job_id: str, address: Optional[str] = typer.Option(None, help=ADDRESS_HELP)):
    """Status of one job (exit 1 when it FAILED or was STOPPED)."""
    from .jobs import job_status
    status = job_status(job_id, address)
    console.print(status)
    if status in ("FAILED", "STOPPED"):
        raise typer.Exit(1)


@command(jobs_app, "logs")
def jobs_logs(job_id: str, address: Optional[str] = typer.Option(None, help=ADDRESS_HELP)):
    """The job's driver output."""
    from .jobs import job_logs
    console.print(job_logs(job_id, address), markup=False, highlight=False)


@command(jobs_app, "stop")
def jobs_stop(job_id: str, address: Optional[str] = typer.Option(None, help=ADDRESS_HELP)):
    """Ask the cluster to stop a job."""
    from .jobs import stop_job
    stop_job(job_id, address)
    console.print(f"stop requested for {job_id}")


@command(app, "search-benchmark")
def search_benchmark(out: Path = typer.Option(Path("results/search_benchmark"), help="directory for the results, simulations and live searches"),
                     tables: Optional[Path] = typer.Option(None, help="directory of the Parquet tables (default: OUT/tables); "
                                                            "missing tables are built there, existing ones reused when their sha256 matches"),
                     report: Optional[Path] = typer.Option(None, help="directory for search_benchmark.json, SEARCH_RESULTS.md "
                                                           "and the PNGs (default: OUT)"),
                     seeds: int = typer.Option(50, min=2, help="paired seeds per searcher (0..seeds-1)"),
                     trials: int = typer.Option(60, min=20, help="trials per simulated search"),
                     replicates: int = typer.Option(24, min=0, help="configurations trained a second time (re-training noise)"),
                     workers: int = typer.Option(2, min=1, help="processes for the simulations"),
                     sections: str = typer.Option(",".join(("tables", "searchers", "concurrency", "warm", "live", "nodes")),
                                                  help="comma-separated: tables, searchers, concurrency, warm, live, nodes")):
    """Tabular search benchmark: every configuration of the discrete spaces in search_spaces/tabular/
    trained once through Ray and cached to Parquet; TPE, random and Optuna TPE over paired seeds against
    the tables; concurrency; warm-start transfer methods; live searches against the table; a
    multi-node Ray cluster. JSON + Markdown + PNG in OUT; an interrupted run continues where it stopped."""
    from .search.benchmark import SECTIONS, run_search_benchmark
    chosen = [x.strip() for x in sections.split(",") if x.strip()]
    bad = [x for x in chosen if x not in SECTIONS]
    if bad:
        raise ConfigError(f"--sections: unknown {', '.join(bad)} (choose from {', '.join(SECTIONS)})")
    run_search_benchmark(out, seeds=seeds, trials=trials, replicates=replicates, workers=workers, sections=chosen,
                         tables_dir=tables, report_dir=report, console=console)
    console.print(((report or out) / "SEARCH_RESULTS.md").read_text(), markup=False, highlight=False)


@command(app)
def demo(out: Path = typer.Option(Path("runs/demo"), help="result directory of the demo search"),
         trials: int = typer.Option(14, min=9, help="number of trials (TPE starts after 8 random ones)"),
         steps: int = typer.Option(200, min=1, help="training steps per trial"),
         tracking_uri: Optional[str] = typer.Option(None, help=URI_HELP)):
    """A few-minute tour: a small TPE search of Auto-PGD on embedded Ray and a local MLflow store,
    the leaderboard, and the best model registered as models:/auto_pgd_demo@challenger."""
    from .ops.search import demo_search
    spec, outcome = demo_search(out, trials, steps, tracking_uri, console)
    _print_search(outcome, spec)


def main(argv: Optional[List[str]] = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], standalone_mode=True)


if __name__ == "__main__":
    main()
