"""Behaviour-cloning training of the token-domain VLA from demonstration bags."""
