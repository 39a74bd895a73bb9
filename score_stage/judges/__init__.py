"""The judges a score stage can ask: Qwen3-VL loaded in this rank's process (`in_process`)."""
