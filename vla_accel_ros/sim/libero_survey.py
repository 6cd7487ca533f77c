"""How often the scripted LIBERO expert succeeds: every task of a suite on a few seeded layouts.

    python -m vla_accel_ros.sim.libero_survey libero_object --seeds 0,1

Needs the LIBERO extra. Seeded layouts are the demonstration layouts (`LiberoArm.reset(seed)`); the
official init states stay untouched. One camera at 64 px is rendered per step, as little as the arm
allows, since only success and length are measured.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass


@dataclass
class ExpertEpisode:
    """One scripted-expert episode: which task and layout, whether it succeeded, how long it took."""

    task: str
    seed: int
    success: bool
    steps: int
    seconds: float


def survey(suite: str, seeds: list[int], tasks: list[int] | None = None) -> list[ExpertEpisode]:
    """Run the expert on `tasks` (default: all) of `suite`, one episode per seed."""
    from vla_accel_ros.sim.libero_arm import LiberoArm, libero_tasks

    specs = libero_tasks(suite) if tasks is None else [f"{suite}:{i}" for i in tasks]
    out: list[ExpertEpisode] = []
    for spec in specs:
        with LiberoArm(spec, image_size=64, cameras=("corner",)) as arm:
            if not arm.has_expert:
                print(f"{spec}: no scripted expert ({arm.instruction})", flush=True)
                continue
            for seed in seeds:
                t0 = time.monotonic()
                arm.reset(seed)
                while not arm.done:
                    arm.step(arm.expert_action())
                ep = ExpertEpisode(spec, seed, arm.success, arm.steps, round(time.monotonic() - t0, 1))
                print(
                    f"{spec} seed {seed}: {'ok' if ep.success else 'FAILED'} in {ep.steps} steps "
                    f"({ep.seconds} s) {arm.instruction}",
                    flush=True,
                )
                out.append(ep)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite")
    ap.add_argument("--seeds", default="0,1", help="comma-separated layout seeds")
    ap.add_argument("--tasks", default=None, help="comma-separated task indices (default: all)")
    ap.add_argument("--json", default=None, help="write the episodes here")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    tasks = [int(t) for t in args.tasks.split(",")] if args.tasks else None
    episodes = survey(args.suite, seeds, tasks)
    ok = sum(e.success for e in episodes)
    steps = [e.steps for e in episodes if e.success]
    print(
        f"{args.suite}: {ok}/{len(episodes)} succeeded; steps of successes {min(steps, default=0)}-"
        f"{max(steps, default=0)}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(e) for e in episodes], f, indent=1)


if __name__ == "__main__":
    main()
