"""High-level calorimeter features against the CaloChallenge definitions, and the plots."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from simulators.base import SimulatorInputError
from simulators.calorimeter.features import feature_names, high_level_features, layer_energies
from simulators.calorimeter.geometry import load_geometry

SHARED = Path(__file__).resolve().parents[2] / "shared"
XML = SHARED / "data" / "calochallenge"


def _reference_features(showers: np.ndarray, e_inc: np.ndarray, xml_path: Path) -> dict:
    """Straightforward per-voxel loops over the binning XML, following the challenge's
    definitions: voxel centres at the middle of the radial bin and of the α bin (α bins split
    [-π, π)), x = r cos α, y = r sin α, weighted means and √(⟨x²⟩ − ⟨x⟩²) per layer."""
    layers = []
    for el in ET.parse(xml_path).getroot().iter("Layer"):
        edges = [float(s) for s in el.attrib["r_edges"].split(",")]
        if len(edges) > 1:
            layers.append((int(el.attrib["id"]), edges, int(el.attrib["n_bin_alpha"])))
    out: dict[str, list] = {}
    for shower, e0 in zip(showers, e_inc, strict=True):
        out.setdefault("E_tot/E_inc", []).append(shower.sum() / e0)
        pos = 0
        for lid, edges, na in layers:
            sx = sy = sxx = syy = sr = srr = tot = 0.0
            hits = count = 0
            for ia in range(na):
                alpha = -math.pi + (ia + 0.5) * 2 * math.pi / na
                for ir in range(len(edges) - 1):
                    r = 0.5 * (edges[ir] + edges[ir + 1])
                    v = shower[pos]
                    pos += 1
                    x, y = r * math.cos(alpha), r * math.sin(alpha)
                    sx += v * x
                    sy += v * y
                    sxx += v * x * x
                    syy += v * y * y
                    sr += v * r
                    srr += v * r * r
                    tot += v
                    hits += v > 0
                    count += 1
            out.setdefault(f"E_layer_{lid}", []).append(tot)
            out.setdefault(f"sparsity_{lid}", []).append(1 - hits / count)
            d = tot + 1e-16
            out.setdefault(f"ec_r_{lid}", []).append(sr / d)
            out.setdefault(f"width_r_{lid}", []).append(math.sqrt(max(srr / d - (sr / d) ** 2, 0)))
            if na > 1:
                out.setdefault(f"ec_eta_{lid}", []).append(sx / d)
                out.setdefault(f"ec_phi_{lid}", []).append(sy / d)
                out.setdefault(f"width_eta_{lid}", []).append(
                    math.sqrt(max(sxx / d - (sx / d) ** 2, 0))
                )
                out.setdefault(f"width_phi_{lid}", []).append(
                    math.sqrt(max(syy / d - (sy / d) ** 2, 0))
                )
        assert pos == len(shower)
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("particle", ["photons", "pions"])
def test_features_match_reference_loops(particle):
    xml = XML / f"binning_dataset_1_{particle}.xml"
    if not xml.is_file():
        pytest.skip(f"{xml} is not present")
    g = load_geometry(f"ds1_{particle}")
    rng = np.random.default_rng(0)
    showers = rng.exponential(1.0, (6, g.n_voxels)) * (rng.random((6, g.n_voxels)) < 0.4)
    showers[0, g.layer_slices[1]] = 0.0  # an empty layer gives zeros, not NaN
    e_inc = np.full((6, 1), 500.0)
    got = high_level_features(showers, e_inc, g)
    want = _reference_features(showers, e_inc[:, 0], xml)
    assert set(got) == set(want) == set(feature_names(g))
    assert list(got) == feature_names(g)
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-10, atol=1e-5, err_msg=key)
    assert got["ec_eta_1"][0] == 0 and got["width_eta_1"][0] == 0


def test_single_voxel_and_symmetric_pair():
    g = load_geometry("ds1_photons")
    s1 = g.layer_slices[1]
    edges = g.r_edges[1]
    x = np.zeros((2, g.n_voxels))
    # shower 0: one voxel, radial bin 3 (r = 7 mm), alpha bin 5 (alpha = +pi/10)
    x[0, s1.start + 5 * 16 + 3] = 10.0
    # shower 1: alpha bins 2 and 7 are opposite (alpha differs by pi), same radius
    x[1, s1.start + 2 * 16 + 3] = 4.0
    x[1, s1.start + 7 * 16 + 3] = 4.0
    f = high_level_features(x, np.array([100.0, 100.0]), g)
    r = 0.5 * (edges[3] + edges[4])
    assert r == 7.0
    assert f["ec_eta_1"][0] == pytest.approx(r * math.cos(math.pi / 10))
    assert f["ec_phi_1"][0] == pytest.approx(r * math.sin(math.pi / 10))
    assert f["width_eta_1"][0] == pytest.approx(0.0, abs=1e-6)
    assert f["ec_eta_1"][1] == pytest.approx(0.0, abs=1e-12)
    assert f["ec_phi_1"][1] == pytest.approx(0.0, abs=1e-12)
    a2 = -math.pi + 2.5 * math.pi / 5
    assert f["width_eta_1"][1] == pytest.approx(abs(r * math.cos(a2)))
    assert f["width_phi_1"][1] == pytest.approx(abs(r * math.sin(a2)))
    assert f["E_tot/E_inc"].tolist() == [0.1, 0.08]
    assert f["sparsity_1"][0] == pytest.approx(1 - 1 / 160)
    assert f["sparsity_2"][0] == 1.0


def test_layer_energies_sum_to_total_and_reject_bad_shapes():
    g = load_geometry("ds1_pions")
    x = np.random.default_rng(1).random((4, g.n_voxels))
    le = layer_energies(x, g)
    assert le.shape == (4, 7)
    np.testing.assert_allclose(le.sum(axis=1), x.sum(axis=1))
    np.testing.assert_allclose(le[:, 4], x[:, 213:363].sum(axis=1))  # layer 12 of the pions
    with pytest.raises(SimulatorInputError, match="shape"):
        layer_energies(np.zeros((4, 368)), g)
    with pytest.raises(SimulatorInputError, match="e_inc"):
        high_level_features(x, np.ones(3), g)


def test_plots_write_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from surrogates.plots.calorimeter import plot_average_shower, plot_feature_histograms

    g = load_geometry("ds1_photons")
    rng = np.random.default_rng(2)
    a = rng.exponential(1.0, (50, g.n_voxels))
    b = rng.exponential(1.2, (50, g.n_voxels))
    e = np.full(50, 1000.0)
    p1 = plot_average_shower(a, g, tmp_path / "avg.png", title="test")
    fa = high_level_features(a, e, g)
    fb = high_level_features(b, e, g)
    p2 = plot_feature_histograms(
        {"reference": fa, "model": fb}, tmp_path / "hist.png", keys=["E_tot/E_inc", "E_layer_2"]
    )
    for p in (p1, p2):
        assert Path(p).stat().st_size > 5000
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
