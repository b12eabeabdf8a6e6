"""The CRF against brute force over every tag sequence, in float16, and on cupy."""

from typing import Any, Dict, List, Tuple

import numpy
import pytest
from util import scored_paths

from spacy_ntk_ner.ner._crf import lattice as crf
from spacy_ntk_ner.ner._crf import loss as crf_loss
from spacy_ntk_ner.ner._crf.lattice import Lattice, Params
from spacy_ntk_ner.ner._crf.tag_scheme import Entities, StepPlan, TagScheme

LENGTHS = [4, 1, 3]


def problem(scheme: str, seed: int = 0, scale: float = 2.0) -> Dict[str, Any]:
    ts = TagScheme.build(scheme, ["A", "B"])
    K = len(ts.tags)
    rng = numpy.random.default_rng(seed)
    B, T = len(LENGTHS), max(LENGTHS)
    return {
        "E": rng.normal(size=(B, T, K)) * scale,
        "lengths": numpy.asarray(LENGTHS, dtype="int32"),
        "trans": rng.normal(size=(K, K)) * scale,
        "start": rng.normal(size=K) * scale,
        "end": rng.normal(size=K) * scale,
        "scheme": ts,
    }


def brute_force(p: Dict[str, Any], b: int) -> Tuple[float, numpy.ndarray, List[int]]:
    """log Z, the tag marginals and the best sequence of doc b, over every sequence."""
    ts, n = p["scheme"], int(p["lengths"][b])
    K = len(ts.tags)
    scores = dict(scored_paths(ts, p["E"][b, :n], p["trans"], p["start"], p["end"]))
    values = numpy.asarray(list(scores.values()))
    log_z = float(numpy.logaddexp.reduce(values))
    marg = numpy.zeros((n, K))
    for seq, s in scores.items():
        marg[numpy.arange(n), seq] += numpy.exp(s - log_z)
    return log_z, marg, list(max(scores, key=scores.__getitem__))


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_recursions_match_brute_force(scheme: str, dtype: str) -> None:
    p = problem(scheme)
    E = p["E"].astype(dtype)
    params = Params(p["trans"].astype(dtype), p["start"], p["end"])
    lattice = Lattice(numpy, E, p["lengths"], params, p["scheme"])
    fb = crf.marginals(lattice)
    log_m, log_z, prefix, suffix = fb.log_marginals, fb.log_z, fb.log_prefix, fb.log_suffix
    a2, lz2 = crf.forward(lattice)
    b2 = crf.backward(lattice)
    path = crf.viterbi(lattice)
    tol = 1e-9 if dtype == "float64" else 2e-5
    for b, n in enumerate(LENGTHS):
        ref_z, ref_m, ref_path = brute_force(p, b)
        assert log_z[b] == pytest.approx(ref_z, rel=tol, abs=tol)
        numpy.testing.assert_allclose(numpy.exp(log_m[b, :n]), ref_m, atol=tol * 10)
        assert path[b, :n].tolist() == ref_path
        numpy.testing.assert_allclose(a2[b, :n], prefix[b, :n], rtol=tol, atol=tol)
        numpy.testing.assert_allclose(b2[b, :n], suffix[b, :n], rtol=tol, atol=tol)
    numpy.testing.assert_allclose(lz2, log_z, rtol=tol)


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_float16_emissions_are_computed_in_float32(scheme: str) -> None:
    """An encoder that hands float16 gets marginals that sum to 1 at every position."""
    p = problem(scheme, seed=3, scale=4.0)
    E16 = p["E"].astype("float16")
    trans = p["trans"].astype("float32")
    start, end = p["start"].astype("float32"), p["end"].astype("float32")
    args = (p["lengths"], Params(trans, start, end), p["scheme"])
    fb = crf.marginals(Lattice(numpy, E16, *args))
    log_m, log_z = fb.log_marginals, fb.log_z
    assert log_m.dtype == numpy.float32
    for b, n in enumerate(LENGTHS):
        numpy.testing.assert_allclose(numpy.exp(log_m[b, :n]).sum(axis=1), 1.0, atol=1e-5)
    ref = crf.marginals(Lattice(numpy, E16.astype("float32"), *args))
    numpy.testing.assert_allclose(log_z, ref.log_z, rtol=1e-6)
    path = crf.viterbi(Lattice(numpy, E16, *args))
    assert (path == crf.viterbi(Lattice(numpy, E16.astype("float32"), *args))).all()


def test_scheme_masks_are_made_once_per_device() -> None:
    ts = TagScheme.build("BILUO", ["A"])
    first = ts.on(numpy)
    assert ts.on(numpy) is first
    assert first.allowed_f.dtype == numpy.float32
    assert (first.allowed == ts.allowed).all()


def all_functions(xp: Any, p: Dict[str, Any]) -> Dict[str, Any]:
    """Every CRF function's output for problem `p` computed with `xp`."""
    ts = p["scheme"]
    E, lengths = xp.asarray(p["E"], dtype="float32"), xp.asarray(p["lengths"])
    params = Params(*(xp.asarray(p[k], dtype="float32") for k in ("trans", "start", "end")))
    lattice = Lattice(xp, E, lengths, params, ts)
    fb = crf.marginals(lattice)
    f_prefix, f_log_z = crf.forward(lattice)
    path = crf.viterbi(lattice)
    weights = xp.asarray([1.0, -0.5, 2.0], dtype="float32")
    out = {
        "log_m": fb.log_marginals,
        "log_z": fb.log_z,
        "log_prefix": f_prefix,
        "forward_log_z": f_log_z,
        "log_suffix": crf.backward(lattice),
        "path": path,
        "transitions": crf_loss.transition_counts(lattice, fb, weights),
        "boundaries": xp.stack(crf_loss.boundary_counts(lattice, fb, weights)),
    }
    path_h = path.get() if hasattr(path, "get") else path
    ents = ts.entities(path_h, p["lengths"])
    on_device = Entities(*(xp.asarray(x) for x in ents))
    out["span_log_probs"] = crf.span_log_probs(lattice, fb, path, on_device)
    assert len(ents.doc) > 0
    return out


@pytest.mark.gpu
@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_every_crf_function_on_cupy_matches_numpy(scheme: str) -> None:
    import cupy

    p = problem(scheme, seed=5, scale=1.0)
    on_cpu = all_functions(numpy, p)
    on_gpu = all_functions(cupy, p)
    live = numpy.arange(max(LENGTHS))[None, :] < p["lengths"][:, None]
    for name, expected in on_cpu.items():
        got = cupy.asnumpy(on_gpu[name])
        if name in ("log_m", "log_prefix", "log_suffix"):
            expected, got = expected[live], got[live]
        if name == "path":
            assert (got[live] == expected[live]).all(), name
        else:
            numpy.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=name)


def test_update_and_prediction_op_counts() -> None:
    """benchmarks/bench_crf_ops.py's counts: the same operations at 2 and 3 passes
    (the passes and both lattices are one batch), one number back from the device per
    update, and two transfers (paths, then scores) per prediction batch."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_crf_ops.py"
    spec = importlib.util.spec_from_file_location("bench_crf_ops", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    k2, k3 = bench.count(2, 12, "BIO"), bench.count(3, 12, "BIO")
    assert k2["update"]["ops"] == k3["update"]["ops"]
    assert k2["update"]["to_host"] == k3["update"]["to_host"] == 1
    assert k2["predict"]["to_host"] == 2


def brute_force_span_prob(p: Dict[str, Any], b: int, tags: List[int], s: int, e: int) -> float:
    """P(the entity decoded at tokens s..e of doc b is exactly right): the tags there
    are the decoded ones and, under BIO, the next tag does not continue the entity."""
    ts, n = p["scheme"], int(p["lengths"][b])
    inside = int(ts.inside[tags[s]]) if ts.name == "BIO" else -1
    total, hit = [], []
    for seq, score in scored_paths(ts, p["E"][b, :n], p["trans"], p["start"], p["end"]):
        total.append(score)
        same = list(seq[s : e + 1]) == tags[s : e + 1]
        if same and not (e + 1 < n and seq[e + 1] == inside):
            hit.append(score)
    if not hit:
        return 0.0
    return float(numpy.exp(numpy.logaddexp.reduce(hit) - numpy.logaddexp.reduce(total)))


@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_span_probabilities_match_brute_force(scheme: str, seed: int) -> None:
    """Every decoded entity's probability equals the sum over all tag sequences that
    contain exactly that entity (not merely a number in [0, 1])."""
    p = problem(scheme, seed=seed, scale=1.0)
    p["E"][:, :, 1:] += 1.0  # favour entities, so every doc decodes some
    params = Params(p["trans"], p["start"], p["end"])
    lattice = Lattice(numpy, p["E"], p["lengths"], params, p["scheme"])
    fb = crf.marginals(lattice)
    path = crf.viterbi(lattice)
    ents = p["scheme"].entities(path, p["lengths"])
    doc_idx, starts, ends = ents.doc, ents.first, ents.last
    assert len(starts) >= 1, "the fixture should decode entities"
    log_p = crf.span_log_probs(lattice, fb, path, ents)
    # What decoding reads: only the positions the entities need, the same numbers.
    assert (crf.span_log_probs(lattice, crf.recursions(lattice), path, ents) == log_p).all()
    for d, s, e, lp in zip(doc_idx, starts, ends, log_p):
        ref = brute_force_span_prob(p, int(d), path[d].tolist(), int(s), int(e))
        assert numpy.exp(lp) == pytest.approx(ref, rel=1e-6, abs=1e-9)


def odd_scheme() -> TagScheme:
    """A pattern unlike BILUO and BIO: tags 0-4 share their predecessors, and the others
    have one, three and two of their own."""
    K = 8
    allowed = numpy.zeros((K, K), dtype=bool)
    allowed[[0, 5, 6, 7], :5] = True
    allowed[1, 5] = allowed[[2, 3, 4], 6] = allowed[[1, 2], 7] = True
    ends = numpy.ones(K, dtype=bool)
    tags = tuple(f"T{i}" for i in range(K))
    return TagScheme("BIO", ("A",), tags, allowed, ends, ends, numpy.full(K, -1))


@pytest.mark.parametrize("scheme", ["BILUO", "BIO", "odd"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sparse_steps_compute_what_dense_steps_compute(
    scheme: str, dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps that read each tag's allowed neighbours only (`StepPlan`) give the paths,
    and the recursions the numbers, of steps over every pair of tags, bit for bit (exact ties
    too: sums of small integers)."""

    def make() -> TagScheme:
        return odd_scheme() if scheme == "odd" else TagScheme.build(scheme, ["A", "B", "C"])

    sparse = make()
    plan = sparse.viterbi_plan
    assert not plan.dense
    if scheme == "odd":
        assert plan.n_wide == 5 and plan.narrow.shape == (3, 3)
        assert plan.real.sum() == 1 + 3 + 2
    else:
        assert not sparse.recursion_plans[1].dense or scheme == "BIO"
    with monkeypatch.context() as m:
        m.setattr(StepPlan, "build", classmethod(lambda cls, a: cls.build_dense(len(a))))
        dense = make()
        dense.on(numpy)
    K = len(sparse.tags)
    rng = numpy.random.default_rng(7)
    lengths = numpy.asarray([9, 1, 4, 9, 6, 9, 9, 9], dtype="int32")
    shapes = [(len(lengths), 9, K), (K, K), (K,), (K,)]
    # Small integers (sums that tie exactly), and normal scores.
    for draw in (lambda s: rng.integers(-1, 2, s), lambda s: rng.normal(size=s) * 3):
        E, *scores = (draw(shape).astype(dtype) for shape in shapes)
        params = Params(*scores)
        cuts = (numpy.arange(8) % 3 == 1, numpy.arange(8) % 2 == 1)
        for cut in ((None, None), cuts):
            got, want = (Lattice(numpy, E, lengths, params, ts, cut) for ts in (sparse, dense))
            assert (crf.viterbi(got) == crf.viterbi(want)).all()
            for a, b in zip(vars(crf.marginals(got)).values(), vars(crf.marginals(want)).values()):
                assert (a == b).all()
