"""The bundled trainer: LoRA / QLoRA / full fine-tuning on a task's own training examples.

`harness.train.trainer.train(TrainSpec)` is the whole job; `loop.py` is the shared PyTorch loop,
`sft.py` and `classify.py` the data for causal and classification models, `sweep.py` grids of runs.
"""
