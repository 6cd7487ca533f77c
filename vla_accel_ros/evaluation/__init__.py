"""Closed-loop evaluation in the simulator, bag replay, and the reports built from them."""
