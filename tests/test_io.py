"""Save and load: lossless round trip, atomic and careful writes, clear errors."""

import numpy as np
import pytest

import hierbayes as hb


def test_round_trip_reports_predicts_and_compares_without_refit(tmp_path, regression_fit):
    path = regression_fit.save(tmp_path / "fit.nc")
    loaded = hb.load(path)
    for name in ("Intercept", "x", "sd_g", "b_g", "sigma"):
        np.testing.assert_array_equal(
            loaded.idata.posterior[name], regression_fit.idata.posterior[name]
        )
    assert "constant_data" not in loaded.idata.groups()
    assert loaded.model.spec == regression_fit.model.spec
    assert loaded.model.priors == regression_fit.model.priors
    assert loaded.diagnostics == regression_fit.diagnostics
    a = regression_fit.pooling(empirical_bayes=False).table
    b = loaded.pooling(empirical_bayes=False).table
    np.testing.assert_allclose(a.select_dtypes("number"), b.select_dtypes("number"))
    new = regression_fit.model.data.iloc[:3]
    np.testing.assert_array_equal(regression_fit.predict(new), loaded.predict(new))
    table = hb.compare({"saved": regression_fit, "loaded": loaded})
    np.testing.assert_allclose(table["elpd_loo"].iloc[0], table["elpd_loo"].iloc[1])


def test_round_trip_keeps_priors_and_known_se(tmp_path, eight_fit):
    loaded = hb.load(eight_fit.save(tmp_path / "eight.nc"))
    assert loaded.model.priors["sd_school"] == hb.priors.HalfCauchy(5)
    assert loaded.model.spec.se == "sigma"
    np.testing.assert_array_equal(
        loaded.pooling().table["no_pooling"], eight_fit.pooling().table["no_pooling"]
    )


def test_no_overwrite_without_consent(tmp_path, regression_fit):
    path = regression_fit.save(tmp_path / "fit.nc")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        regression_fit.save(path)
    assert path.read_bytes() == before
    regression_fit.save(path, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.nc"]  # no temporary left


def test_truncated_foreign_and_altered_files(tmp_path, regression_fit):
    path = regression_fit.save(tmp_path / "fit.nc")
    truncated = tmp_path / "truncated.nc"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(hb.FileFormatError, match="not a readable netCDF file"):
        hb.load(truncated)
    text = tmp_path / "notes.nc"
    text.write_text("not a netCDF file")
    with pytest.raises(hb.FileFormatError, match="not a readable netCDF file"):
        hb.load(text)
    foreign = tmp_path / "foreign.nc"
    regression_fit.idata.to_netcdf(str(foreign), engine="h5netcdf")
    with pytest.raises(hb.FileFormatError, match="not a hierbayes fit"):
        hb.load(foreign)
    import arviz as az

    idata = az.from_netcdf(path, engine="h5netcdf")
    idata.load()
    idata.constant_data["y"] = idata.constant_data["y"] + 1.0
    altered = tmp_path / "altered.nc"
    idata.to_netcdf(str(altered), engine="h5netcdf")
    with pytest.raises(hb.FileFormatError, match="do not match their hash"):
        hb.load(altered)
    with pytest.raises(FileNotFoundError):
        hb.load(tmp_path / "missing.nc")
    assert issubclass(hb.FileFormatError, ValueError)
