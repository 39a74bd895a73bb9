"""Serving a judge: the vLLM server the launcher starts on each node for the score stage (`vllm`), which the score
stage's benchmark starts the same way. Standard library only."""
