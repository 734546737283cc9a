"""Training a run: the recipe notebook 02 teaches (:mod:`~bintut.training.recipe`), the loop that runs
it in a folder (:mod:`~bintut.training.loop`), resuming, stopping, devices, tracking and the run cache.
Imports the ideas (quant, schedule, model, config), ``files``, ``data`` and ``integer``; never ``teaching``.
"""
