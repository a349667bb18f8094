"""Benchmarks of the package's attention against PyTorch's, run by ``make bench``.

``python -m benchmarks`` runs four suites, each in its own module:

* :mod:`benchmarks.layers`: the five attention layers (the book's
  ``MultiHeadAttention``, the wrapper, ``impl="sdpa"``, and the same
  projections around ``F.scaled_dot_product_attention`` and around
  ``flash_attention``) against ``nn.MultiheadAttention`` with and without
  weights, forward and forward plus backward, for T from 128 to 8,192;
* :mod:`benchmarks.kernels`: the attention kernels alone, SDPA,
  ``flash_attention`` and the formula;
* :mod:`benchmarks.generation`: greedy generation with and without the KV cache;
* :mod:`benchmarks.imports`: what ``import attention`` adds to ``import torch``.

Every time is the minimum (and the median) of interleaved repeats, every
ratio divides two numbers measured in the same run, and every suite writes
``benchmarks/results/<suite>.json`` (machine, settings, each measurement) and
SVG plots next to it. :mod:`benchmarks.targets` checks the issue's targets.
Nothing here is imported by the package or its tests' timing: the tests run
the suites at toy sizes and check only the files they write.
"""
