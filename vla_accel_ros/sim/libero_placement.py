"""Corrections to LIBERO's placement samplers, so that seeded layouts put every object where its BDDL says.

Two things in LIBERO's samplers (libero/libero/envs/regions/base_region_sampler.py) make seeded layouts
differ from the official init states:

- The table samplers shrink each region by the object's radius, so most objects' ranges collapse to the
  region's centre and every seed gives the same layout (`widen_placement`).
- The samplers that put an object on or in a fixture's site (`SiteRegionRandomSampler`, e.g. a bowl "on
  the stove" or "on the cabinet's top side"; `InSiteRegionRandomSampler`, "in the top drawer") add the
  site's *world* position, turned by the fixture's yaw, to the fixture's position: the site's offset is
  counted twice and turned, so the object lands off the table (LIBERO-Spatial task 7's bowl falls to the
  floor) or in mid-air; the on-top sampler also adds the fixture's full height to a site that already
  sits on its top. `fix_site_samplers` hands each such sampler the site's offset in the fixture's own
  frame instead, so the object is placed at the site under the fixture's newly sampled pose, just above it.

The official init states are loaded as saved simulator states and are not affected.
"""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np

SITE_DROP = 0.005  # m: an object put on a site starts this far above it, and settles onto it
MAX_TRAVEL = 0.03  # m an object may slide while a seeded layout settles
MAX_DROP = 0.20  # m it may fall (the table samplers drop objects from about 6 cm, stacks more)


def widen_placement(sampler: Any) -> None:
    """Let each object's centre range over its whole BDDL region, not the region shrunk by its radius.

    LIBERO's regions are about 5 cm wide, so shrunk by the radius on each side most objects' ranges
    collapse to the centre and the official init states spread by under 1 cm. Unshrunk, the centre is
    drawn across the region (+-2.5 cm), the overlap check still holds, and the seeded layouts surround the
    official ones without repeating them.
    """
    for child in getattr(sampler, "samplers", {}).values():
        widen_placement(child)
    if hasattr(sampler, "ensure_object_boundary_in_range"):
        sampler.ensure_object_boundary_in_range = False


class _SiteOffset:
    """Stands in for robosuite's sim in a site sampler's `sample`, which reads only `data.get_site_xpos`."""

    def __init__(self, offset: np.ndarray) -> None:
        self.data = self
        self._offset = offset

    def get_site_xpos(self, _name: str) -> np.ndarray:
        return self._offset


def fix_site_samplers(inner: Any) -> None:
    """Make each on/in-site sampler of LIBERO env `inner` put its object at the site (see the module doc)."""
    from libero.libero.envs.regions.base_region_sampler import (
        InSiteRegionRandomSampler,
        SiteRegionRandomSampler,
    )

    model, data = inner.sim.model._model, inner.sim.data._data
    for sampler in inner.conditional_placement_initializer.samplers.values():
        if isinstance(sampler, SiteRegionRandomSampler):
            adds_height = not isinstance(sampler, InSiteRegionRandomSampler)
            sampler.sample = _site_sample(sampler.sample, inner, model, data, adds_height)


def _site_sample(
    original: Any, inner: Any, model: mujoco.MjModel, data: mujoco.MjData, adds_height: bool
) -> Any:
    """`original` (a site sampler's bound `sample`) fed the offset that puts the object at the site."""

    def sample(
        sim: Any,
        fixtures: dict | None = None,
        reference: Any = None,
        site_name: str = "",
        on_top: bool = True,
    ):
        if not isinstance(reference, str) or not fixtures or reference not in fixtures:
            return original(sim, fixtures=fixtures, reference=reference, site_name=site_name, on_top=on_top)
        ref_pos, ref_quat, ref_obj = fixtures[reference]
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, inner.get_object(reference).root_body)
        site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site_name)
        # The site in the fixture's frame, from the current kinematics (mj_step1 ran before sampling,
        # after any drawer was opened), then where the fixture's new pose puts it.
        local = data.xmat[body].reshape(3, 3).T @ (data.site_xpos[site] - data.xpos[body])
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, np.asarray(ref_quat, dtype=np.float64))  # (w, x, y, z)
        rot = rot.reshape(3, 3)
        world = np.asarray(ref_pos, dtype=np.float64) + rot @ local
        world[2] += SITE_DROP
        # What the sampler adds to the offset it reads: the fixture's position (plus its height when on
        # top, for the on-site sampler) and its z_offset; it turns the offset by the fixture's rotation.
        base = np.asarray(ref_pos, dtype=np.float64).copy()
        if on_top and adds_height:
            base[2] += ref_obj.top_offset[-1]
        base[2] += getattr(original.__self__, "z_offset", 0.0)
        offset = rot.T @ (world - base)
        return original(
            _SiteOffset(offset), fixtures=fixtures, reference=reference, site_name=site_name, on_top=on_top
        )

    return sample


def unsettled(placed: np.ndarray, settled: np.ndarray) -> list[int]:
    """Indices of objects that moved far while the scene settled (fell off a fixture, were knocked over).

    `placed` and `settled` are (n, 7) poses (position, quaternion). A table sampler drops objects from a
    few cm, so only horizontal travel of more than MAX_TRAVEL or a drop of more than MAX_DROP counts.
    """
    moved = np.linalg.norm(settled[:, :2] - placed[:, :2], axis=1) > MAX_TRAVEL
    fell = placed[:, 2] - settled[:, 2] > MAX_DROP
    return [int(i) for i in np.flatnonzero(moved | fell)]
