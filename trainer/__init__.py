"""The DeepSpeed RLVR trainer. Heavy modules (deepspeed, transformers) load lazily."""
