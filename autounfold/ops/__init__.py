"""Operations built on the library and the registry: train and save, search with tracking and
registration, canary promotion, the drift monitor and its re-search trigger.

The layers below (channels, problems, algorithms, unfolding, training, evaluation; search; registry)
never import this package; the CLI is a thin shell over it.
"""
