"""Stacking weights: the known optimum, unchanged by a shift of every density (which makes
ArviZ 0.23's weights fall back to uniform), and ArviZ's own where it works."""

import warnings

import arviz as az
import numpy as np

from hierbayes.core.stacking import stacking_weights


def test_the_optimum_is_found_at_any_scale():
    """Two points only model 0 predicts, one only model 1 predicts: maximising
    2 log w_0 + log w_1 gives w = (2/3, 1/3), also with every density near exp(-2000)."""
    lpd = np.log(np.array([[1.0, 1e-300], [1.0, 1e-300], [1e-300, 1.0]]))
    np.testing.assert_allclose(stacking_weights(lpd), [2 / 3, 1 / 3], atol=1e-5)
    np.testing.assert_allclose(stacking_weights(lpd - 2000.0), [2 / 3, 1 / 3], atol=1e-5)


def test_weights_are_arviz_where_its_densities_do_not_underflow():
    rng = np.random.default_rng(3)
    idatas = {}
    for name, shift in (("a", 0.0), ("b", 0.05), ("c", 0.3)):
        ll = rng.normal(-1.0 - shift, 0.3, size=(2, 200, 60))  # chains, draws, points
        idatas[name] = az.from_dict(log_likelihood={"y": ll}, posterior={"mu": ll[..., 0]})
    loos = {name: az.loo(idata, pointwise=True) for name, idata in idatas.items()}
    with warnings.catch_warnings():  # ArviZ 0.23 sorts in place, which pandas 3.1 deprecates
        warnings.simplefilter("ignore", DeprecationWarning)
        table = az.compare(loos)
    lpd = np.column_stack([np.asarray(loos[name].loo_i) for name in table.index])
    np.testing.assert_allclose(stacking_weights(lpd), table["weight"].to_numpy(), atol=1e-4)
