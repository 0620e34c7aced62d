"""Channel decoding (5G LDPC, Sionna's code): the BP update rule equals Sionna's LDPC5GDecoder, the
unfolded network with all weights 1 is classical BP, the problem's draws are seeded and consistent
with the code, bad configs are refused naming the field, and the platform's train / save / load /
evaluate / export run on it."""
import json
from pathlib import Path

import pytest
import torch

import autounfold
from autounfold.algorithms.bp import ATANH_CLIP, TINY, BeliefPropagation, bp_classical, check_update, minsum, sionna_bp
from autounfold.build import build_model, build_problem
from autounfold.config import load_config, parse_config
from autounfold.errors import ConfigError, InputError
from autounfold.evaluation.baselines import CLASSICAL
from autounfold.evaluation.evaluate import evaluate_model
from autounfold.problems.decoding import DecodingBatch, DecodingProblem
from autounfold.seeding import generator
from autounfold.training.trainer import train

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def p128():
    return DecodingProblem(k=64, n=128, ebno_db=(1.0, 4.0))


@pytest.fixture(scope="module")
def p512():
    return DecodingProblem(k=256, n=512, ebno_db=(1.0, 3.0))


def _cfg(layer="neural_bp", layers=3, algorithm="auto", **training):
    return parse_config({"problem": {"name": "decoding", "n": 128, "k": 64, "ebno_db": [1.0, 4.0]},
                         "model": {"num_layers": layers, "layer": layer, "step_init": 1.0, "algorithm": algorithm},
                         "training": {"steps": 4, "batch_size": 32, "lr": 0.05, "loss": "multi_iteration",
                                      "target": "supervised", "validation_batch": 64, "validate_every": 2, **training}})


def _f64(inst):
    return DecodingBatch(inst.llr.double(), inst.bits.double(), inst.ebno_db)


# ---- the code and the draws ---------------------------------------------------------------------
def test_draws_are_codewords_of_the_decoding_graph(p128, p512):
    """bits[:, :k] are the information bits and, with the fillers (zero), the bits satisfy every parity
    check of the graph Sionna decodes on (these codes send every non-punctured graph node)."""
    for p in (p128, p512):
        g = p.graph
        inst = p.sample(16, 3)
        assert inst.llr.shape == (16, p.n) and inst.llr.dtype == torch.float32
        assert inst.bits.shape == (16, 2 * p.z + p.n) and inst.ebno_db.shape == (16,)
        full = torch.zeros(16, g.num_vns)
        full[:, g.span_vns] = inst.bits
        assert g.span_vns.numel() + g.k_filler == g.num_vns
        syndrome = torch.zeros(16, g.num_cns).index_add_(1, g.cn_idx, full[:, g.vn_idx]) % 2
        assert syndrome.abs().max() == 0
        assert not (inst.bits[:, :p.k] == 0).all()                            # random information bits
        torch.testing.assert_close(inst.bits[:, 2 * p.z:p.k], p.encode(inst.bits[:, :p.k])[:, :p.k - 2 * p.z])
        # the channel logits point to the sent bits on average (Sionna's sign: positive = bit 1)
        assert float(((inst.llr > 0).float() == inst.bits[:, 2 * p.z:]).float().mean()) > 0.8


def test_same_seed_same_batch(p128):
    a, b, c = p128.sample(8, generator(1, "t")), p128.sample(8, generator(1, "t")), p128.sample(8, generator(2, "t"))
    assert torch.equal(a.llr, b.llr) and torch.equal(a.bits, b.bits) and torch.equal(a.ebno_db, b.ebno_db)
    assert not torch.equal(a.llr, c.llr)
    lo, hi = p128.ebno_db
    assert ((a.ebno_db >= lo) & (a.ebno_db <= hi)).all()


def test_bpsk_and_qpsk_give_the_same_llr_statistics():
    """QPSK is two BPSK per symbol: at equal Eb/N0 the LLR of a bit has the same mean 4 R Eb/N0 (times
    the sent sign) and the same variance (twice the mean)."""
    for mod in ("bpsk", "qpsk"):
        p = DecodingProblem(k=64, n=128, modulation=mod, ebno_db=(2.0, 2.0), all_zero=True)
        inst = p.sample(4000, 0)
        assert (inst.bits == 0).all()
        m = -inst.llr                                             # all-zero: the logits of bit 1 are negative
        want = 4 * 0.5 * 10 ** 0.2
        assert abs(float(m.mean()) / want - 1) < 0.02, mod
        assert abs(float(m.var()) / (2 * want) - 1) < 0.03, mod


# ---- BP against Sionna, and the unfolded network against BP ---------------------------------------
@pytest.mark.parametrize("iterations", [1, 5, 10])
def test_bp_equals_sionna_ldpc5g_decoder(p128, iterations):
    """Same channel logits, same iterations, Sionna's exact boxplus update: equal to 1e-6 in float64; in
    float32 the same hard decisions (messages near the atanh clip differ by float32 rounding only)."""
    inst = p128.sample(64, generator(0, "sionna"))
    ours, theirs = bp_classical(p128, _f64(inst), iterations), sionna_bp(p128, _f64(inst), iterations, precision="double")
    assert ours.dtype == theirs.dtype == torch.float64
    torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-6)
    o32, t32 = bp_classical(p128, inst, iterations), sionna_bp(p128, inst, iterations)
    assert torch.equal(o32 >= 0, t32 >= 0)
    diff = (o32 - t32).abs()
    assert float(diff.mean()) < 1e-3 and float(diff.flatten().quantile(0.99)) < 0.05


def test_bp_equals_sionna_on_the_medium_code(p512):
    inst = p512.sample(24, generator(0, "sionna512"))
    torch.testing.assert_close(bp_classical(p512, _f64(inst), 6), sionna_bp(p512, _f64(inst), 6, precision="double"),
                               atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("n,k", [(80, 64), (112, 100)])
def test_bp_equals_sionna_on_high_rate_codes_with_unsent_parity(n, k):
    """High rates keep nodes of the graph that are never sent (LLR 0): still Sionna's decoder."""
    p = build_problem(load_config("preset:neural_bp", [f"problem.n={n}", f"problem.k={k}"]).problem)
    inst = p.sample(16, generator(0, "sionna-high-rate", n))
    torch.testing.assert_close(bp_classical(p, _f64(inst), 5), sionna_bp(p, _f64(inst), 5, precision="double"),
                               atol=1e-6, rtol=1e-6)


def test_bp_decodes_and_iterations_help(p128):
    inst = p128.sample(200, generator(0, "iters"))
    b = [p128.summarize(x, inst, inst.bits)["bler"] for x in (p128.init(inst), bp_classical(p128, inst, 2),
                                                             bp_classical(p128, inst, 10))]
    assert b[0] > b[1] > b[2]
    assert p128.summarize(minsum(p128, inst, 10), inst, inst.bits)["bler"] >= b[2]    # min-sum loses to boxplus


def test_check_update_is_the_leave_one_out_boxplus(p128):
    g = p128.graph
    v2c = torch.randn(3, g.num_edges, dtype=torch.float64) * 3
    out = check_update(v2c, g, 1e9)
    for c in (0, 5, g.num_cns - 1):
        edges = [int(e) for e in g.cn_table[c] if e < g.num_edges]
        for e in edges:
            others = torch.stack([torch.tanh(v2c[:, f] / 2) for f in edges if f != e], -1).prod(-1)
            torch.testing.assert_close(out[:, e], 2 * torch.atanh(others))


# ---- the layered schedule --------------------------------------------------------------------------
def test_layers_partition_the_graph_by_base_graph_row(p128, p512):
    for p in (p128, p512):
        g = p.graph
        seen = torch.cat([e.reshape(-1) for e, _ in g.layers])
        assert torch.equal(seen.sort().values, torch.arange(g.num_edges))           # every edge once
        for edges, nodes in g.layers:
            assert torch.equal(g.vn_idx[edges], nodes)
            assert nodes.reshape(-1).unique().numel() == nodes.numel()              # the checks share no node
            assert g.cn_idx[edges].div(g.z, rounding_mode="floor").unique().numel() == 1   # one base-graph row
        assert p.describe()["code"]["layers"] == len(g.layers)


def _layered_by_hand(p, llr, iterations, order, weights=None):
    """Layered BP written check by check (float64): every check of a row in turn, the a-posteriori LLR of its
    nodes updated before the next check. ``weights``: per iteration a dict of u (v2c_weight), w (c2v_weight) per
    edge type, w^ch (channel_weight) per column type and a scale s: at the start of each iteration the channel
    part of T is w^ch L, a check reads u * (T - m) and sends w s boxplus(...)."""
    g = p.graph
    L = p.internal_llr(llr)
    c2v = torch.zeros(llr.shape[0], g.num_edges, dtype=llr.dtype)
    rows = sorted({int(c) // g.z for c in g.cn_idx})
    for it in range(iterations):
        wt = (weights or [{}] * iterations)[it]
        u, w, s = wt.get("v2c_weight"), wt.get("c2v_weight"), wt.get("scale", 1.0)
        chan = L.clone()
        if "channel_weight" in wt:
            for v in range(g.num_vns):
                if int(g.vn_type[v]) < g.num_vn_types:              # fillers keep weight 1
                    chan[:, v] = L[:, v] * wt["channel_weight"][g.vn_type[v]]
        T = chan.clone()
        for e in range(g.num_edges):
            T[:, g.vn_idx[e]] += c2v[:, e]
        for r in (rows[::-1] if order == "reverse" else rows):
            for c in range(r * g.z, min((r + 1) * g.z, g.num_cns)):
                edges = [int(e) for e in g.cn_table[c] if e < g.num_edges]
                v2c = {e: T[:, g.vn_idx[e]] - c2v[:, e] for e in edges}
                inp = {e: v2c[e] * (1.0 if u is None else u[g.edge_type[e]]) for e in edges}
                for e in edges:
                    prod = torch.stack([torch.tanh(inp[f] / 2) for f in edges if f != e], -1).prod(-1)
                    prod = torch.where(prod.abs() < TINY, torch.zeros_like(prod), prod).clamp(-ATANH_CLIP, ATANH_CLIP)
                    m = (2 * torch.atanh(prod)).clamp(-p.llr_max, p.llr_max)
                    c2v[:, e] = m * (1.0 if w is None else w[g.edge_type[e]]) * s
                    T[:, g.vn_idx[e]] = v2c[e] + c2v[:, e]
    return p.span_of(T.clamp(-p.llr_max, p.llr_max))


@pytest.mark.parametrize("order", ["reverse", "natural"])
def test_layered_bp_equals_a_check_by_check_decoder(p128, order):
    inst = _f64(p128.sample(3, generator(0, "layered", order)))
    ours = bp_classical(p128, inst, 2, schedule="layered", order=order)
    torch.testing.assert_close(ours, _layered_by_hand(p128, inst.llr, 2, order), atol=1e-9, rtol=1e-9)
    assert not torch.allclose(ours, bp_classical(p128, inst, 2))                   # not flooding


def test_layered_bp_converges_faster_and_holds_at_high_snr():
    p = DecodingProblem(k=64, n=128, ebno_db=(3.0, 3.0))
    inst = p.sample(2000, generator(0, "layered-speed"))
    bler = lambda x: p.summarize(x, inst, inst.bits)["bler"]                      # noqa: E731
    flood5, lay5 = bler(bp_classical(p, inst, 5)), bler(bp_classical(p, inst, 5, schedule="layered"))
    assert lay5 < flood5 / 2
    assert lay5 < bler(bp_classical(p, inst, 5, schedule="layered", order="natural"))
    # the a-posteriori LLR is a running sum: clipping the extrinsic part made this decoder diverge at high Eb/N0
    hi = DecodingProblem(k=64, n=128, ebno_db=(7.0, 7.0))
    inst = hi.sample(300, generator(0, "layered-high"))
    traj = bp_classical(hi, inst, 20, trajectory=True, schedule="layered")
    assert [hi.errors(traj[k - 1], inst.bits)[1] for k in (3, 5, 10, 20)] == [0, 0, 0, 0]
    assert all(torch.isfinite(x).all() and x.abs().max() <= hi.llr_max for x in traj)


def test_weighted_layered_bp_equals_the_check_by_check_decoder(p128):
    """Weights that differ per iteration: the bookkeeping of T (rebuilt from w^ch_k L and the stored weighted
    messages each iteration) matches the hand-written decoder."""
    g = p128.graph
    inst = _f64(p128.sample(2, generator(1, "layered-weights")))
    gen = torch.Generator().manual_seed(3)
    rand = lambda n: 0.5 + torch.rand(n, generator=gen, dtype=torch.float64)       # noqa: E731
    weights = [{"v2c_weight": rand(g.num_edge_types), "c2v_weight": rand(g.num_edge_types),
                "channel_weight": rand(g.num_vn_types), "scale": float(rand(1))} for _ in range(2)]
    algo = BeliefPropagation(schedule="layered")
    state = algo.init_state(p128.init(inst))
    for wt in weights:
        state = algo.step(p128, inst, state, {k: (torch.tensor(v, dtype=torch.float64) if k == "scale" else v)
                                              for k, v in wt.items()})
    torch.testing.assert_close(state.x, _layered_by_hand(p128, inst.llr, 2, "reverse", weights), atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("layer", ["neural_bp", "neural_bp_tied", "bp_scalar"])
def test_untrained_layered_network_is_classical_layered_bp(layer):
    model = build_model(_cfg(layer, layers=4, algorithm="bp_layered"))
    assert model.algorithm.name == "bp_layered" and model.algorithm.schedule == "layered"
    inst = model.problem.sample(64, generator(0, "layered-net"))
    with torch.no_grad():
        xs = model.run(inst, return_all=True)
    ref = bp_classical(model.problem, inst, 4, trajectory=True, schedule="layered")
    for x, r in zip(xs, ref):
        assert torch.equal(x, r)


def test_layered_weights_are_differentiable_and_export(tmp_path):
    from autounfold.deploy import export_torch_export, export_torchscript, load_torch_export, load_torchscript
    cfg = _cfg("neural_bp", layers=2, algorithm="bp_layered")
    model = build_model(cfg)
    p = model.problem
    inst = p.sample(32, generator(0, "layered-grad"))
    loss = sum(p.supervised_loss(x, inst, inst.bits).mean() for x in model.run(inst, return_all=True))
    loss.backward()
    for name, w in model.params.items():
        assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0, name
    with torch.no_grad():
        base = model.run(inst)
        for w in model.params.values():
            w.mul_(1 + 0.2 * torch.rand_like(w))
        assert not torch.equal(model.run(inst), base)
    loaded = autounfold.load(autounfold.save(model, tmp_path / "m", cfg))
    assert loaded.algorithm.name == "bp_layered"
    llr = p.sample(5, generator(1, "layered-export")).llr
    with torch.no_grad():
        torch.testing.assert_close(loaded(llr), model(llr))
    for exporter, loader, name in ((export_torchscript, load_torchscript, "m.pt"),
                                   (export_torch_export, load_torch_export, "m.pt2")):
        module = loader(exporter(loaded, tmp_path / name))
        with torch.no_grad():
            torch.testing.assert_close(module(llr), loaded(llr), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("layer", ["neural_bp", "neural_bp_tied", "bp_scalar"])
def test_untrained_network_is_classical_bp(p128, layer):
    model = build_model(_cfg(layer, layers=4))
    inst = model.problem.sample(64, generator(0, "classical"))
    with torch.no_grad():
        xs = model.run(inst, return_all=True)
    ref = bp_classical(model.problem, inst, 4, trajectory=True)
    assert len(xs) == 4
    for x, r in zip(xs, ref):
        assert torch.equal(x, r)
    with torch.no_grad():
        out = model(inst.llr)
    assert out.shape == (64, 128) and out.dtype == torch.float32
    assert torch.equal(out, ref[-1][:, 2 * model.problem.z:])


def test_weights_change_the_decoder_and_are_differentiable():
    model = build_model(_cfg("neural_bp", layers=3))
    p = model.problem
    assert tuple(model.params["c2v_weight"].shape) == (3, p.graph.num_edge_types)
    assert tuple(model.params["channel_weight"].shape) == (3, p.graph.num_vn_types)
    tied = build_model(_cfg("neural_bp_tied", layers=3))
    assert tuple(tied.params["v2c_weight"].shape) == (1, p.graph.num_edge_types)
    inst = p.sample(32, generator(0, "grad"))
    xs = model.run(inst, return_all=True)
    loss = sum(p.supervised_loss(x, inst, inst.bits).mean() for x in xs)
    loss.backward()
    for name, w in model.params.items():
        assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0, name
    with torch.no_grad():
        base = model.run(inst)
        model.params["c2v_weight"].mul_(1.3)
        assert not torch.equal(model.run(inst), base)


def test_outputs_finite_for_extreme_inputs(p128):
    model = build_model(_cfg("neural_bp", layers=3))
    llr = torch.cat([torch.full((2, 128), 1e4), torch.full((2, 128), -1e4), torch.zeros(2, 128),
                     torch.randn(2, 128) * 50])
    with torch.no_grad():
        out = model(llr)
    assert torch.isfinite(out).all() and out.abs().max() <= p128.llr_max
    assert model.problem.feasible(model.run(model.problem.instance(llr)), None).all()
    assert (out[2:4] < 0).all()                                        # the confident all-zero codeword is kept
    inst = p128.sample(4, 0)
    with torch.no_grad():
        out = model((2 * inst.bits[:, 2 * p128.z:] - 1) * 1e4)         # a confident codeword is kept
    assert torch.equal((out >= 0).float(), inst.bits[:, 2 * p128.z:])


def test_loss_and_metrics(p128):
    inst = p128.sample(50, generator(0, "metrics"))
    x = bp_classical(p128, inst, 5)
    s = p128.summarize(x, inst, inst.bits)
    wrong = (x[:, :64] >= 0).float() != inst.bits[:, :64]
    assert s["ber"] == pytest.approx(float(wrong.float().mean())) and s["bler"] == pytest.approx(float(wrong.any(-1).float().mean()))
    assert p128.errors(x, inst.bits) == (int(wrong.sum()), int(wrong.any(-1).sum()))
    manual = -(inst.bits * torch.log(torch.sigmoid(x)) + (1 - inst.bits) * torch.log(torch.sigmoid(-x))).mean(-1)
    torch.testing.assert_close(p128.supervised_loss(x, inst, inst.bits), manual, atol=1e-5, rtol=1e-4)
    perfect = (2 * inst.bits - 1) * 20
    assert p128.summarize(perfect, inst, inst.bits)["bler"] == 0.0
    assert p128.score({"bler": 0.1}) == -0.1


# ---- configuration errors -------------------------------------------------------------------------
@pytest.mark.parametrize("problem,field", [
    ({"n": 128, "k": 128}, "k"),
    ({"n": 128, "k": 20}, "k"),                     # rate < 1/5
    ({"n": 128, "k": 124}, "k"),                    # rate > 0.95
    ({"n": 128, "k": 8}, "k"),                      # k < 12
    ({"modulation": "16qam"}, "modulation"),
    ({"n": 129, "k": 64, "modulation": "qpsk"}, "modulation"),
    ({"ebno_db": [4.0, 1.0]}, "ebno_db"),
    ({"llr_max": 0}, "llr_max"),
    ({"rate": 0.5}, "rate"),
])
def test_bad_configs_name_the_field(problem, field):
    with pytest.raises(ConfigError, match=rf"problem\.{field}"):
        parse_config({"problem": {"name": "decoding", **problem}, "model": {"layer": "neural_bp", "step_init": 1.0}})


def test_layer_and_input_errors(p128):
    with pytest.raises(ConfigError, match="model.layer 'neural_bp' does not apply to lasso"):
        parse_config({"problem": {"name": "lasso"}, "model": {"layer": "neural_bp", "step_init": 1.0}})
    with pytest.raises(ConfigError, match="does not apply to decoding"):
        parse_config({"problem": {"name": "decoding"}, "model": {"layer": "deepsic", "step_init": 1.0}})
    model = build_model(_cfg("neural_bp", layers=2))
    for bad, what in ((torch.zeros(4, 100), "shape"), (torch.zeros(4, 128, dtype=torch.int64), "float"),
                      (torch.full((4, 128), float("nan")), "NaN")):
        with pytest.raises(InputError, match="llr"):
            model(bad)
    with pytest.raises(ConfigError, match="supervised"):
        p128.loss_scale(p128.sample(2, 0))


# ---- the platform on it ---------------------------------------------------------------------------
def test_preset_search_space_and_classical_table():
    cfg = load_config("preset:neural_bp")
    assert (cfg.problem.n, cfg.problem.k, cfg.model.num_layers, cfg.model.layer) == (128, 64, 5, "neural_bp")
    assert cfg.model.algorithm == "bp_layered"
    assert (cfg.training.loss, cfg.training.target) == ("multi_iteration", "supervised")
    from autounfold.spaces.spec import load_spec
    spec = load_spec(ROOT / "search_spaces" / "decoding.yaml")
    assert spec.base["problem"]["name"] == "decoding"
    assert set(spec.space["model.layer"].values) == {"neural_bp", "neural_bp_tied", "bp_scalar"}
    assert set(spec.space["model.algorithm"].options) == {"bp", "bp_layered"}
    assert all(name in CLASSICAL for name in DecodingProblem.classical)
    assert isinstance(build_problem(cfg.problem), DecodingProblem)


def test_train_save_load_evaluate_export(tmp_path):
    from autounfold.deploy import export_torch_export, export_torchscript, load_torch_export, load_torchscript
    cfg = _cfg("neural_bp", layers=3)
    model = build_model(cfg)
    before = {k: v.detach().clone() for k, v in model.params.items()}
    result = train(model, cfg.training, cfg.seed, progress=False)
    assert [h["step"] for h in result.history] == [0, 2, 4]
    with torch.no_grad():                             # weights moved (the best state may be the start)
        model.params["c2v_weight"].add_(0.01 * torch.randn_like(model.params["c2v_weight"]))
    assert not torch.equal(model.params["c2v_weight"], before["c2v_weight"])
    path = autounfold.save(model, tmp_path / "m", cfg)
    loaded = autounfold.load(path)
    inst = model.problem.sample(16, generator(0, "io"))
    with torch.no_grad():
        torch.testing.assert_close(loaded(inst.llr), model(inst.llr))
    rows = evaluate_model(loaded, ["nominal", "ebno3"], batch=64)
    methods = {r["method"] for r in rows}
    assert "neural_bp-3 (this model)" in methods and "BP (boxplus, flooding)-3" in methods
    assert "Sionna LDPC5GDecoder (boxplus)-3" in methods and "BP (boxplus, layered, last row first)-3" in methods
    sub = {r["method"]: r for r in rows if r["scenario"] == "nominal"}
    assert sub["BP (boxplus, flooding)-3"]["bler"] == sub["Sionna LDPC5GDecoder (boxplus)-3"]["bler"]
    for exporter, loader, name in ((export_torchscript, load_torchscript, "m.pt"),
                                   (export_torch_export, load_torch_export, "m.pt2")):
        module = loader(exporter(loaded, tmp_path / name))
        for batch in (1, 7):
            llr = model.problem.sample(batch, generator(4, "export", batch)).llr
            with torch.no_grad():
                torch.testing.assert_close(module(llr), loaded(llr), atol=1e-5, rtol=1e-4)
        meta = json.loads((tmp_path / f"{name}.json").read_text())
        assert meta["inputs"] == {"llr": ["B", 128]} and meta["output"] == {"llr_out": ["B", 128]}


def test_scalar_layer_transfers_to_the_other_code_and_per_edge_layers_do_not(p512):
    scalar = build_model(_cfg("bp_scalar", layers=2))
    moved = build_model(parse_config({**scalar.config.model_dump(mode="json"),
                                      "problem": {"name": "decoding", "n": 512, "k": 256}}))
    moved.load_state_dict(scalar.state_dict())
    inst = p512.sample(8, 0)
    with torch.no_grad():
        assert torch.equal(moved.run(inst), bp_classical(p512, inst, 2))
    per_edge = build_model(_cfg("neural_bp", layers=2))
    with pytest.raises(InputError):
        per_edge(inst.llr)


def test_canary_serves_decoding_traffic():
    from autounfold.evaluation.canary import decide, run_canary
    champion, challenger = build_model(_cfg("neural_bp", layers=2)), build_model(_cfg("bp_scalar", layers=2))
    report = run_canary(champion, challenger, champion.problem, batches=10, batch_size=16, fraction=0.5,
                        min_challenger_batches=2)
    s = report.summary()
    assert s["champion_batches"] + s["challenger_batches"] == 10 and -1 <= s["champion_score"] <= 0
    assert decide(s, DecodingProblem.promote_tolerance) in ("promote", "rollback")
    assert 0 < DecodingProblem.promote_tolerance < 0.05


def test_algorithm_declaration():
    algo = BeliefPropagation()
    assert algo.name == "bp" and algo.problems == ("decoding",) and algo.normalize is None
    with pytest.raises(ConfigError, match="cn_update"):
        BeliefPropagation("phi")
    with pytest.raises(ConfigError, match="schedule"):
        BeliefPropagation(schedule="serial")
    with pytest.raises(ConfigError, match="order"):
        BeliefPropagation(schedule="layered", order="random")
    from autounfold.plugins import ALGORITHMS
    layered = ALGORITHMS.get("bp_layered")
    assert layered.variant_of == "bp" and layered().schedule == "layered" and layered.parameters == algo.parameters
    for layer in ("neural_bp", "neural_bp_tied", "bp_scalar"):
        assert _cfg(layer, algorithm="bp_layered").model.algorithm == "bp_layered"
    with pytest.raises(ConfigError, match="'bp_layered' does not run layer 'deepsic'"):
        parse_config({"problem": {"name": "detection"}, "model": {"layer": "deepsic", "algorithm": "bp_layered"}})
    with pytest.raises(ConfigError, match="unrolls 'bp' or 'bp_layered'"):
        _cfg("neural_bp", algorithm="sic")


def test_benchmark_rows_gaps_and_bars_on_a_small_run(tmp_path):
    from autounfold.evaluation.decoding_benchmark import NETWORKS, run_decoding_benchmark
    with pytest.raises(ConfigError, match="networks must be among"):
        run_decoding_benchmark(tmp_path / "bad", networks=["neural_bp_serial"])
    assert not (tmp_path / "bad").exists()
    r = run_decoding_benchmark(tmp_path, codes=["n128"], networks=["neural_bp_layered"], steps=2, test_blocks=100,
                               quick=True, quiet=True, sionna_blocks=20, latency_batch=20, repeats=1)
    e = r["codes"][0]
    net = NETWORKS["neural_bp_layered"]
    for row in ("BP-5", "BP-10", "layered BP-5", "layered BP-10", "layered BP-20", "layered BP-5, rows first to last", net):
        assert len(e["curves"][row]["bler"]) == len(e["ebno"]), row
    assert e["training"][net]["train_ebno"] == [2.0, 5.0] and e["training"][net]["config"]["model"]["algorithm"] == "bp_layered"
    at, gaps = e["ebno_at"]["0.01"], e["gaps"]
    for ref in ("BP-10", "layered BP-10"):
        assert gaps[ref]["0.01"][ref] == 0.0
        if at[net] is not None and at[ref] is not None:
            assert gaps[ref]["0.01"][net] == pytest.approx(at[net] - at[ref])
    labels = [b["bar"] for b in r["bars"]]
    assert any("at least as good as flooding BP-10" in b for b in labels)
    assert any("layered BP-10 (same schedule)" in b for b in labels)
    assert set(e["latency"]) >= {"BP-10", "layered BP-5", net}
    md = (tmp_path / "DECODING_RESULTS.md").read_text()
    assert "gap to layered BP-10" in md and net in md
    for png in ("decoding_ber_bler_n128.png", "decoding_per_iteration_n128.png", "decoding_weights_n128.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_benchmark_bars_read_the_gaps_against_both_references():
    from autounfold.evaluation.decoding_benchmark import NETWORKS, _bars
    net, flood = NETWORKS["neural_bp_layered"], NETWORKS["neural_bp"]
    at = {"BP-10": 3.4, "layered BP-10": 3.3, "layered BP-5": 3.5, net: 3.35, flood: 4.3}
    e = {"code": "n128", "test_blocks": 10000, "curves": {k: {} for k in at},
         "ebno_at": {"0.01": dict(at), "0.001": {**at, net: 4.6, "BP-10": 4.4}}}
    bars = {b["bar"]: b for b in _bars([e])}
    get = lambda *words: next(b for k, b in bars.items() if all(w in k for w in words))    # noqa: E731
    b = get(net, "flooding BP-10", "BLER 0.01")
    assert b["met"] and b["measured"] == pytest.approx(-0.05)
    b = get(net, "same schedule", "BLER 0.01")
    assert not b["met"] and b["measured"] == pytest.approx(0.05)
    b = get(net, "weights' own gain", "BLER 0.01")
    assert b["met"] and b["measured"] == pytest.approx(-0.15)
    b = get(net, "flooding BP-10", "BLER 0.001")
    assert not b["met"] and b["measured"] == pytest.approx(0.2)
    assert not get(flood, "flooding BP-10", "BLER 0.01")["met"]
    assert not any("same schedule" in k for k in bars if k.startswith(f"n128: {flood} "))
    e["test_blocks"] = 100                                             # half an error is 5e-3 > 1e-2 / 5
    assert not any(b["met"] for b in _bars([e]) if "BLER 0.01" in b["bar"])


def test_search_space_trains_each_schedule_on_its_range_and_validates_on_one():
    """search_spaces/decoding.yaml: the schedule is a conditional whose options set the training
    Eb/N0 range (training.problem); the problem every trial validates on is the same."""
    from pathlib import Path

    from autounfold.spaces import dimensions as D
    from autounfold.spaces.spec import load_spec
    spec = load_spec(Path(__file__).parent.parent / "search_spaces" / "decoding.yaml")
    exps = {name: spec.experiment(D.default_point(spec.space, {"model.algorithm": name})) for name in ("bp", "bp_layered")}
    assert {n: e.model.algorithm for n, e in exps.items()} == {"bp": "bp", "bp_layered": "bp_layered"}
    assert exps["bp"].problem == exps["bp_layered"].problem
    assert exps["bp"].training_problem().ebno_db != exps["bp_layered"].training_problem().ebno_db
    assert exps["bp_layered"].training_problem().ebno_db[0] < exps["bp"].training_problem().ebno_db[0]
