"""Executors answer the batches the runner plans: `local` in this process, `ray` on replicas of a Ray cluster.

The runner decides every batch (dedupe, store look-up, order, boundaries); an executor only decides who answers
each one and records it in the driver's store as it returns, so results do not depend on the executor.
"""
