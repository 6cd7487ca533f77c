"""The `vla-accel` command (placeholder until sub-commands land)."""


def main() -> None:
    raise SystemExit("vla-accel: no sub-commands yet")
