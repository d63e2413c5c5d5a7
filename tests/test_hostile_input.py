"""Property-based: random and hostile data frames and formulas either build a model or raise
one of hierbayes' own errors (DataError, SpecError), never anything from deep inside a library,
and a model that builds has dropped nothing.
"""

import warnings

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import hierbayes as hb

HOSTILE = [np.nan, np.inf, -np.inf, None, "text", "", -1.0, 0.0, 1e300, True]


@st.composite
def frames(draw):
    """A plausible frame (y, x, g, s, k), then a few hostile edits: bad cells, a lost column."""
    n = draw(st.integers(1, 14))
    finite = st.floats(-100, 100, allow_nan=False)
    df = pd.DataFrame(
        {
            "y": draw(st.lists(finite, min_size=n, max_size=n)),
            "x": draw(st.lists(finite, min_size=n, max_size=n)),
            "g": draw(st.lists(st.sampled_from("abcdef"), min_size=n, max_size=n)),
            "s": draw(st.lists(st.floats(0.1, 10), min_size=n, max_size=n)),
            "k": draw(st.lists(st.integers(0, 5), min_size=n, max_size=n)),
        }
    )
    for _ in range(draw(st.integers(0, 3))):
        column = draw(st.sampled_from(list(df.columns)))
        row = draw(st.integers(0, n - 1))
        df[column] = df[column].astype(object)
        df.loc[row, column] = draw(st.sampled_from(HOSTILE))
    if draw(st.booleans()) and draw(st.booleans()):
        df = df.drop(columns=draw(st.sampled_from(list(df.columns))))
    return df


GOOD_TERMS = [
    "1",
    "x",
    "C(k)",
    "k",
    "x:k",
    "(1 | g)",
    "(x | g)",
    "(x || g)",
    "(0 + x | g)",
    "(1 | g/k)",
    "(1 | g) + (1 | k)",
]
BAD_TERMS = ["0", "log(x)", "nothere", "(1 | nothere)", "(", ")", "|", "+", "x*", "~", "(1 |)"]


@st.composite
def formulas(draw):
    lhs = draw(st.sampled_from(["y"] * 15 + ["x", "g", "", "log(y)", "y y"]))
    terms = draw(st.lists(st.sampled_from(GOOD_TERMS * 8 + BAD_TERMS), min_size=1, max_size=4))
    return f"{lhs} ~ {' + '.join(terms)}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=frames(),
    formula=formulas(),
    se=st.sampled_from([None] * 4 + ["s", "x", "missing"]),
    family=st.sampled_from(["gaussian", "gaussian", "poisson", "bernoulli", "binomial", "weird"]),
    trials=st.sampled_from([None] * 4 + ["k", "s"]),
)
def test_only_a_model_or_a_hierbayes_error(data, formula, se, family, trials):
    with warnings.catch_warnings():
        # few groups and questionable priors warn by design; warnings are not the outcome here
        warnings.simplefilter("ignore", hb.IdentifiabilityWarning)
        try:
            model = hb.Model(formula, data, se=se, family=family, trials=trials)
        except (hb.DataError, hb.SpecError) as exc:
            event(type(exc).__name__)
            return
    event("built")
    assert model.design.n_obs == len(data)  # nothing dropped
    assert np.isfinite(model.design.y).all() and np.isfinite(model.design.X).all()
    for f in model.design.factors:
        assert f.codes.min() >= 0 and np.isfinite(f.Z).all()
