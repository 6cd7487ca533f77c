"""Decoding strategies over the VLA's prefill / extend / rollback interface."""
