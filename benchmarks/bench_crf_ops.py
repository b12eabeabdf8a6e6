"""Count the array operations of ntk_ner's CRF per training update and per prediction
batch, on numpy: on cupy each is about one kernel launch, which is what bounds the CRF's
speed on a GPU for short docs. Deterministic; runs in seconds.

Usage: python benchmarks/bench_crf_ops.py [--n-passes 1 2 3] [--docs 32] [--json OUT]

The component runs on a stub model that hands it fixed random emissions (so only the
component's own work is counted) through an `Ops` whose arrays are an ndarray subclass
and whose `xp` is a counting stand-in for numpy. One operation is counted per ufunc
call (a reduction too), numpy function (`__array_function__`), setitem, gather (an
index holding an array), array method that has no hook (argmax, astype, copy,
cumsum), array created by an `xp` function, and `ops.alloc`/`ops.pad` (one kernel
each on cupy); nested calls count once. Views (reshape, transpose, basic slices)
are free. Transfers are counted apart: `to_host` (float(), .item(), .tolist(),
`ops.to_numpy`: each waits for the device) and `to_device` (`xp.asarray` of host
data). Run it from a checkout: `PYTHONPATH=. python benchmarks/bench_crf_ops.py`, or
with `PYTHONPATH` naming another checkout's package to count that code.
"""

import argparse
import json
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Model, NumpyOps

COUNTS: Counter = Counter()
_DEPTH = [0]


def _plain(x: Any) -> Any:
    if isinstance(x, Counted):
        return x.view(numpy.ndarray)
    if isinstance(x, (list, tuple)):
        return type(x)(_plain(v) for v in x)
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


def _wrap(x: Any) -> Any:
    # numpy hands back a scalar where cupy keeps a 0-d array on the device.
    if isinstance(x, numpy.generic):
        x = numpy.asarray(x)
    if isinstance(x, numpy.ndarray) and not isinstance(x, Counted):
        return x.view(Counted)
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _counted(kind: str, call: Callable[[], Any]) -> Any:
    """Count one `kind` operation unless inside another, and wrap its result."""
    if _DEPTH[0] == 0:
        COUNTS[kind] += 1
    _DEPTH[0] += 1
    try:
        return _wrap(call())
    finally:
        _DEPTH[0] -= 1


def _has_array(key: Any) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(isinstance(k, (numpy.ndarray, list)) for k in keys)


class Counted(numpy.ndarray):
    """An ndarray that counts the operations made on it."""

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        kwargs = _plain(kwargs)
        return _counted("ops", lambda: getattr(ufunc, method)(*_plain(inputs), **kwargs))

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        return _counted("ops", lambda: func(*_plain(args), **_plain(kwargs)))

    def __setitem__(self, key: Any, value: Any) -> None:
        _counted("ops", lambda: self.view(numpy.ndarray).__setitem__(_plain(key), _plain(value)))

    def __getitem__(self, key: Any) -> Any:
        plain = self.view(numpy.ndarray)
        if _has_array(key):
            return _counted("ops", lambda: plain[_plain(key)])
        return _wrap(plain[key])

    def _method(self, name: str, *args: Any, **kwargs: Any) -> Any:
        plain = self.view(numpy.ndarray)
        return _counted("ops", lambda: getattr(plain, name)(*_plain(args), **_plain(kwargs)))

    def argmax(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("argmax", *args, **kwargs)

    def argmin(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("argmin", *args, **kwargs)

    def astype(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("astype", *args, **kwargs)

    def copy(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("copy", *args, **kwargs)

    def cumsum(self, *args: Any, **kwargs: Any) -> Any:
        return self._method("cumsum", *args, **kwargs)

    def _to_host(self, name: str, *args: Any) -> Any:
        if _DEPTH[0] == 0:
            COUNTS["to_host"] += 1
        return getattr(self.view(numpy.ndarray), name)(*args)

    def __float__(self) -> float:
        return float(self._to_host("item"))

    def __int__(self) -> int:
        return int(self._to_host("item"))

    def item(self, *args: Any) -> Any:
        return self._to_host("item", *args)

    def tolist(self) -> Any:
        return self._to_host("tolist")


class CountingXP:
    """numpy, counting what it creates: a call that gets no counted array makes a new
    one (from host data: a transfer to the device too)."""

    __name__ = "numpy"

    def __getattr__(self, name: str) -> Any:
        attr = getattr(numpy, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            if any(isinstance(a, Counted) for a in (*args, *kwargs.values())):
                return attr(*args, **kwargs)
            if name in ("asarray", "array") and args and not numpy.isscalar(args[0]):
                if _DEPTH[0] == 0:
                    COUNTS["to_device"] += 1
            return _counted("ops", lambda: attr(*args, **kwargs))

        return call


class CountingOps(NumpyOps):
    """NumpyOps over counted arrays; `alloc` and `pad` count one operation each, as on
    cupy (`CupyOps.pad` is one kernel), and zero-size allocations none."""

    name = "counting"
    xp = CountingXP()

    def alloc(self, shape: Any, *, dtype: Any = "float32", zeros: bool = True) -> Any:
        size = int(numpy.prod(shape))
        make = lambda: numpy.zeros(shape, dtype=dtype)  # noqa: E731
        return _counted("ops", make) if size else _wrap(make())

    def pad(self, seqs: Any, round_to: int = 1) -> Any:
        T = max(len(s) for s in seqs)
        out = numpy.zeros((len(seqs), T) + seqs[0].shape[1:], dtype=seqs[0].dtype)
        for i, s in enumerate(seqs):
            out[i, : len(s)] = s.view(numpy.ndarray)
        COUNTS["ops"] += 1
        return _wrap(out)

    def to_numpy(self, data: Any, *, byte_order: Any = None) -> Any:
        COUNTS["to_host"] += 1
        return numpy.array(_plain(data))

    def asarray(self, data: Any, *, dtype: Any = None) -> Any:
        if isinstance(data, Counted):
            return data if dtype is None else data.astype(dtype)
        return CountingXP().asarray(data, dtype=dtype)


def stub_model(n_tags: int, seed: int) -> Model:
    """A model that hands out random emissions and holds the CRF's parameters."""
    rng = numpy.random.default_rng(seed)

    def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[Any, Callable]:
        out = [_wrap(rng.normal(size=(len(d), n_tags)).astype("float32")) for d in docs]
        return out, lambda d_out: docs

    model: Model = Model(
        "stub",
        forward,
        ops=CountingOps(),
        dims={"nO": n_tags},
        params={"transitions": None, "start": None, "end": None},
        attrs={"head_lr_scale": 1.0},
    )
    trans = rng.normal(size=(n_tags, n_tags)).astype("float32")
    model.set_param("transitions", _wrap(trans))
    model.set_param("start", _wrap(numpy.zeros(n_tags, dtype="float32")))
    model.set_param("end", _wrap(numpy.zeros(n_tags, dtype="float32")))
    return model


LABELS = ["A", "B", "C", "D"]


def examples(nlp: Any, n_docs: int, seed: int) -> List[Example]:
    """Random docs of 5 to 40 tokens with a few one- to three-token entities."""
    rng = numpy.random.default_rng(seed)
    out = []
    for _ in range(n_docs):
        n = int(rng.integers(5, 41))
        tags = ["O"] * n
        i = 0
        while i < n:
            if rng.random() < 0.15:
                width = min(int(rng.integers(1, 4)), n - i)
                label = LABELS[int(rng.integers(len(LABELS)))]
                tags[i : i + width] = [f"B-{label}"] + [f"I-{label}"] * (width - 1)
                i += width
            else:
                i += 1
        doc = Doc(nlp.vocab, words=[f"w{j}" for j in range(n)], ents=tags)
        out.append(Example(Doc(nlp.vocab, words=[t.text for t in doc]), doc))
    return out


def count(n_passes: int, n_docs: int, scheme: str) -> Dict[str, Dict[str, int]]:
    """Operations and transfers of one training update and one prediction batch.

    RETURNS (Dict[str, Dict[str, int]]): For "update" and "predict".
    """
    from spacy_ntk_ner.ner.component import NTKEntityRecognizer

    nlp = spacy.blank("en")
    egs = examples(nlp, n_docs, seed=0)
    n_tags = 1 + len(LABELS) * (4 if scheme == "BILUO" else 2)
    ner = NTKEntityRecognizer(
        nlp.vocab,
        stub_model(n_tags, seed=1),
        scheme=scheme,
        n_passes=n_passes,
        agreement_weight=1.0,
    )
    ner.cfg["labels"] = list(LABELS)
    found = {}
    for what, run in (
        ("update", lambda: ner.update(egs, drop=0.0)),
        ("predict", lambda: ner.predict([eg.predicted for eg in egs])),
    ):
        run()  # warm-up: anything made once per device is made here
        COUNTS.clear()
        run()
        found[what] = {key: COUNTS[key] for key in ("ops", "to_host", "to_device")}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n-passes", type=int, nargs="*", default=[1, 2, 3])
    parser.add_argument("--docs", type=int, default=32)
    parser.add_argument("--scheme", default="BILUO")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {f"n_passes={n}": count(n, args.docs, args.scheme) for n in args.n_passes}
    print(f"{args.docs} docs of 5-40 tokens, {args.scheme}, {len(LABELS)} labels")
    print("| n_passes | update: ops | to host | to device | predict: ops | to host | to device |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in results.items():
        u, p = r["update"], r["predict"]
        print(
            f"| {name.split('=')[1]} | {u['ops']} | {u['to_host']} | {u['to_device']} "
            f"| {p['ops']} | {p['to_host']} | {p['to_device']} |"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
