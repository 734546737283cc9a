"""What the notebooks call: the stages in three modes, figures (:mod:`~bintut.teaching.viz`), a look
inside the model, recorded runs, source listings and the try-it checks. Only entry points (the
CLI, notebooks, tools) import this layer.
"""
