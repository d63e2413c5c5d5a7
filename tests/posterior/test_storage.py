"""Save and load: lossless round trip, atomic and careful writes, clear errors."""

import os
import signal
import stat
from pathlib import Path

import arviz as az
import numpy as np
import pytest

import hierbayes as hb
import hierbayes.posterior.storage
from hierbayes.posterior.storage import atomic_write, atomic_write_all


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
    # the marginal fit's group effects are exact draws, left out of the diagnostics
    assert loaded.idata.posterior.attrs["drawn_exactly"] == "b_g u_g"
    a = regression_fit.pooling(empirical_bayes=False).table
    b = loaded.pooling(empirical_bayes=False).table
    np.testing.assert_allclose(a.select_dtypes("number"), b.select_dtypes("number"))
    new = regression_fit.model.data.iloc[:3]
    np.testing.assert_array_equal(regression_fit.predict(new), loaded.predict(new))
    # 2 x 500 draws leave a check failing (Pareto k > 0.7 at a row or two, or R-hat above
    # 1.01): compare says so, for both alike
    with pytest.warns(hb.SamplingWarning, match=r"'saved' \((.*)\); 'loaded' \(\1\)"):
        table = hb.compare({"saved": regression_fit, "loaded": loaded})
    np.testing.assert_allclose(table["elpd_loo"].iloc[0], table["elpd_loo"].iloc[1])
    problems = table["problems"].tolist()
    assert problems[0] == problems[1] and problems[0]


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
    idata = az.from_netcdf(path, engine="h5netcdf")
    idata.load()
    assert idata.constant_data["column_0"].attrs["hierbayes_column"] == "y"
    idata.constant_data["column_0"] = idata.constant_data["column_0"] + 1.0
    altered = tmp_path / "altered.nc"
    idata.to_netcdf(str(altered), engine="h5netcdf")
    with pytest.raises(hb.FileFormatError, match="do not match their hash"):
        hb.load(altered)
    with pytest.raises(FileNotFoundError):
        hb.load(tmp_path / "missing.nc")
    assert issubclass(hb.FileFormatError, ValueError)


def interrupt(tmp):
    """A writer cut short by Ctrl-C: half a file, then KeyboardInterrupt."""
    tmp.write_bytes(b"half a fi")
    raise KeyboardInterrupt


def test_atomic_write_interrupted_leaves_no_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupt)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_interrupted_keeps_the_old_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupt)
    assert [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    assert target.read_text() == "old"


def test_atomic_write_interrupted_by_a_real_sigint(tmp_path):
    def writer(tmp):
        tmp.write_text("half")
        signal.raise_signal(signal.SIGINT)  # what Ctrl-C sends
        tmp.write_text("never reached")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "out.txt", writer)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_other_failures_clean_up_too(tmp_path):
    def writer(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "out.txt", writer)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_creates_files_with_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    target = tmp_path / "out.txt"
    atomic_write(target, lambda tmp: tmp.write_text("x"))
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_all_writes_nothing_if_one_writer_is_interrupted(tmp_path):
    (tmp_path / "a.txt").write_text("old a")
    writes = [
        (tmp_path / "a.txt", lambda tmp: tmp.write_text("new a")),
        (tmp_path / "b.txt", lambda tmp: tmp.write_text("new b")),
        (tmp_path / "c.txt", interrupt),
    ]
    done = []
    with pytest.raises(KeyboardInterrupt):
        atomic_write_all(writes, done=done)
    assert done == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]
    assert (tmp_path / "a.txt").read_text() == "old a"


def test_atomic_write_all_interrupted_between_renames_reports_what_landed(tmp_path, monkeypatch):
    """Ctrl-C during the renames: it waits until the rename in progress is recorded."""
    (tmp_path / "b.txt").write_text("old b")
    replace = os.replace

    def replace_then_interrupt(src, dst):
        replace(src, dst)
        signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(hierbayes.posterior.storage.os, "replace", replace_then_interrupt)
    done = []
    with pytest.raises(KeyboardInterrupt):
        atomic_write_all(
            [
                (tmp_path / "a.txt", lambda tmp: tmp.write_text("new a")),
                (tmp_path / "b.txt", lambda tmp: tmp.write_text("new b")),
            ],
            done=done,
        )
    assert done == [tmp_path / "a.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    assert (tmp_path / "a.txt").read_text() == "new a"
    assert (tmp_path / "b.txt").read_text() == "old b"


def test_save_interrupted_mid_write_leaves_nothing(tmp_path, monkeypatch, regression_fit):
    """Fit.save's inner writer (netCDF) cut short: no file, no temporary, old file kept."""

    def to_netcdf(self, filename, **kwargs):
        interrupt(Path(filename))

    monkeypatch.setattr(az.InferenceData, "to_netcdf", to_netcdf)
    with pytest.raises(KeyboardInterrupt):
        regression_fit.save(tmp_path / "fit.nc")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "fit.nc").write_bytes(b"previous fit")
    with pytest.raises(KeyboardInterrupt):
        regression_fit.save(tmp_path / "fit.nc", overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]
    assert (tmp_path / "fit.nc").read_bytes() == b"previous fit"
