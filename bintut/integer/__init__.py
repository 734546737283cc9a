"""The deployed network: binary weights and int8 activations as integers only.

numpy only at import: :mod:`~bintut.integer.kernels`, :mod:`~bintut.integer.fixedpoint`,
:mod:`~bintut.integer.format`, :mod:`~bintut.integer.engine`, :mod:`~bintut.integer.opcount` and the
C export (:mod:`~bintut.integer.c_source`, :mod:`~bintut.integer.c_library`,
:mod:`~bintut.integer.c_build`, sources in ``c/``). With torch: :mod:`~bintut.integer.fold` (a
trained model to the format), :mod:`~bintut.integer.torch_engine` (the same integers in torch) and
:mod:`~bintut.integer.compare` (integer against float). Never imports ``training`` or ``teaching``.
"""
