"""The particle-mesh N-body simulator: ΛCDM density fields conditioned on θ = (Ω_m, σ_8).

One run: white noise (the only random input, so a seed fixes the phases whatever θ) → linear
field with the Eisenstein & Hu power spectrum normalized to σ_8 → 2LPT (or Zel'dovich) particles
at ``a_start`` → FastPM kick-drift-kick steps on a force mesh ``mesh_factor`` times finer than the
particle grid → CIC density contrast δ = ρ/ρ̄ - 1 (not window-compensated) on an ``output_mesh``³
mesh at each requested redshift.

Outputs (``output``):
    ``"field3d"``: δ on the mesh, x_shape (M, M, M).
    ``"slices"``: ``n_slices`` projected slabs of δ, each ``slice_thickness`` Mpc/h thick
    (rounded to whole cells) and perpendicular to the last axis, starting at evenly spaced
    depths j·M // n_slices: x_shape (n_slices, M, M). A slab's δ is the mean of δ over its depth.
With more than one redshift, a leading axis of length len(redshifts) comes first, in the given
order.

Example:
    >>> import numpy as np, simulators
    >>> sim = simulators.get("nbody", n_particles=16, box_size=128.0, n_steps=3)
    >>> x = sim.simulate([[0.3, 0.8]], np.random.default_rng(0))
    >>> x.shape
    (1, 16, 16, 16)
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..base import BoxUniform, Simulator, SimulatorInputError
from .cosmology import Cosmology
from .design import LatinHypercube
from .ic import gaussian_field, lpt_particles, white_noise
from .pm import density_contrast, evolve, time_steps

__all__ = ["NBody"]

_LOW, _HIGH = [0.1, 0.6], [0.5, 1.0]


class NBody(Simulator):
    """Particle-mesh N-body simulator; θ = (Omega_m, sigma_8).

    Settings (all change the output; see the module docstring for the pipeline):
        box_size: side of the periodic box, Mpc/h.
        n_particles: particles per side (the initial-condition grid).
        mesh_factor: force-mesh cells per particle per side (B; 2 by default).
        n_steps: kick-drift-kick steps, linear in a, from ``a_start`` to the lowest redshift.
        a_start: scale factor of the LPT initial conditions.
        redshifts: output redshifts (≥ 0).
        output: ``"field3d"`` or ``"slices"``.
        output_mesh: cells per side of the output mesh; ``None`` means ``n_particles``. At that
            resolution deep voids show empty cells between the stretched particle-lattice planes;
            ``n_particles // 2`` gives smoother fields.
        n_slices, slice_thickness: number and thickness (Mpc/h) of projected slices.
        h, Omega_b, n_s: fixed cosmological parameters.
        transfer: ``"eh_nowiggle"`` or ``"eh"`` (Eisenstein & Hu 1998, with baryon wiggles).
        lpt_order: 1 (Zel'dovich) or 2 (2LPT) initial conditions.
        design: ``"uniform"`` (independent uniform θ) or ``"latin_hypercube"`` (each call to
            ``prior.sample``, i.e. each dataset chunk, is one Latin hypercube).
        fixed_amplitude, invert_phases: paired-and-fixed initial conditions (Angulo & Pontzen
            2016): run the same seed with ``invert_phases`` false and true.
    """

    name: ClassVar[str] = "nbody"
    version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {
        "box_size": 256.0,
        "n_particles": 64,
        "mesh_factor": 2,
        "n_steps": 10,
        "a_start": 0.1,
        "redshifts": [0.0],
        "output": "field3d",
        "output_mesh": None,
        "n_slices": 4,
        "slice_thickness": 16.0,
        "h": 0.6711,
        "Omega_b": 0.049,
        "n_s": 0.9624,
        "transfer": "eh_nowiggle",
        "lpt_order": 2,
        "design": "uniform",
        "fixed_amplitude": False,
        "invert_phases": False,
    }

    def __init__(self, **config: Any):
        super().__init__(**config)
        c = self._config
        self.param_names = ("Omega_m", "sigma_8")
        self.prior = (
            LatinHypercube(_LOW, _HIGH)
            if c["design"] == "latin_hypercube"
            else BoxUniform(_LOW, _HIGH)
        )
        m = self.output_mesh
        shape: tuple[int, ...] = (m, m, m) if c["output"] == "field3d" else (c["n_slices"], m, m)
        if len(c["redshifts"]) > 1:
            shape = (len(c["redshifts"]), *shape)
        self.x_shape = shape

    @property
    def output_mesh(self) -> int:
        m = self._config["output_mesh"]
        return int(self._config["n_particles"] if m is None else m)

    def _check_config(self, c: dict[str, Any]) -> None:
        def need(ok: bool, key: str, what: str) -> None:
            if not ok:
                raise SimulatorInputError(f"nbody: {key} must be {what}, got {c[key]!r}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)

        need(is_num(c["box_size"]) and c["box_size"] > 0, "box_size", "a positive number (Mpc/h)")
        need(
            is_int(c["n_particles"]) and 4 <= c["n_particles"] <= 1024, "n_particles", "in 4..1024"
        )
        need(is_int(c["mesh_factor"]) and 1 <= c["mesh_factor"] <= 4, "mesh_factor", "in 1..4")
        need(is_int(c["n_steps"]) and 1 <= c["n_steps"] <= 10000, "n_steps", "in 1..10000")
        need(is_num(c["a_start"]) and 0.001 <= c["a_start"] < 1, "a_start", "in [0.001, 1)")
        z = c["redshifts"]
        need(
            isinstance(z, list) and len(z) >= 1 and all(is_num(v) and v >= 0 for v in z),
            "redshifts",
            "a non-empty list of redshifts >= 0",
        )
        need(len(set(z)) == len(z), "redshifts", "distinct")
        need(
            all(1.0 / (1.0 + v) > c["a_start"] for v in z),
            "redshifts",
            f"below the starting redshift {1 / c['a_start'] - 1:g}",
        )
        need(c["output"] in ("field3d", "slices"), "output", "'field3d' or 'slices'")
        m = c["output_mesh"]
        need(m is None or (is_int(m) and 2 <= m <= 2048), "output_mesh", "null or in 2..2048")
        m = c["n_particles"] if m is None else m
        need(is_int(c["n_slices"]) and 1 <= c["n_slices"] <= m, "n_slices", f"in 1..{m}")
        need(is_num(c["slice_thickness"]), "slice_thickness", "a number (Mpc/h)")
        cells = round(c["slice_thickness"] / (c["box_size"] / m))
        need(
            cells >= 1 and cells * c["n_slices"] <= m,
            "slice_thickness",
            f"at least one cell ({c['box_size'] / m:g} Mpc/h) and n_slices * thickness <= box_size",
        )
        need(is_num(c["h"]) and 0.2 <= c["h"] <= 1.5, "h", "in [0.2, 1.5]")
        need(is_num(c["Omega_b"]) and 0 < c["Omega_b"] < _LOW[0], "Omega_b", f"in (0, {_LOW[0]})")
        need(is_num(c["n_s"]) and 0.5 <= c["n_s"] <= 1.5, "n_s", "in [0.5, 1.5]")
        need(c["transfer"] in ("eh_nowiggle", "eh"), "transfer", "'eh_nowiggle' or 'eh'")
        need(c["lpt_order"] in (1, 2) and is_int(c["lpt_order"]), "lpt_order", "1 or 2")
        need(
            c["design"] in ("uniform", "latin_hypercube"),
            "design",
            "'uniform' or 'latin_hypercube'",
        )
        for key in ("fixed_amplitude", "invert_phases"):
            need(isinstance(c[key], bool), key, "true or false")

    def cosmology(self, omega_m: float, sigma_8: float) -> Cosmology:
        """The :class:`Cosmology` of one parameter point under this configuration."""
        c = self._config
        return Cosmology(
            Omega_m=float(omega_m),
            sigma_8=float(sigma_8),
            h=c["h"],
            Omega_b=c["Omega_b"],
            n_s=c["n_s"],
            transfer=c["transfer"],
        )

    def run(
        self, omega_m: float, sigma_8: float, noise: np.ndarray
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """One simulation from given white noise (n_particles³, unit variance).

        Returns:
            ``(delta_linear, positions)``: the z = 0 linear density field on the particle grid and
            the particle positions (N, 3) at each output redshift, in the configured order.
        """
        c = self._config
        n, box = c["n_particles"], float(c["box_size"])
        cosmo = self.cosmology(omega_m, sigma_8)
        delta = gaussian_field(
            noise,
            box,
            cosmo.linear_power,
            fixed_amplitude=c["fixed_amplitude"],
            inverted=c["invert_phases"],
        )
        # half a force-mesh cell off the nodes: the unperturbed lattice paints a uniform density
        x, p = lpt_particles(
            cosmo, delta, box, c["a_start"], order=c["lpt_order"], offset=0.5 / c["mesh_factor"]
        )
        a_out = [1.0 / (1.0 + z) for z in c["redshifts"]]
        steps = time_steps(c["a_start"], max(a_out), c["n_steps"])
        _, _, snaps = evolve(x, p, cosmo, steps, n * c["mesh_factor"], box, outputs=a_out)
        return delta, snaps

    def _observe(self, pos: np.ndarray) -> np.ndarray:
        c = self._config
        m, box = self.output_mesh, float(c["box_size"])
        delta = density_contrast(pos, m, box)
        if c["output"] == "field3d":
            return delta
        cells = round(c["slice_thickness"] / (box / m))
        starts = [j * m // c["n_slices"] for j in range(c["n_slices"])]
        return np.stack([delta[:, :, s : s + cells].mean(axis=2) for s in starts])

    def _simulate(self, theta: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        n = self._config["n_particles"]
        out = np.empty((len(theta), *self.x_shape), dtype=self.x_dtype)
        for i, (omega_m, sigma_8) in enumerate(theta):
            noise = white_noise(n, rng)  # drawn before anything θ-dependent: same seed, same phases
            _, snaps = self.run(omega_m, sigma_8, noise)
            fields = np.stack([self._observe(pos) for pos in snaps])
            out[i] = fields.reshape(self.x_shape)
        return out
