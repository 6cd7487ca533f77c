"""The token-domain VLA: tokenizers, model, checkpoints and the runtime the nodes call."""
