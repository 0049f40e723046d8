"""The experiment directory (``--logdir``): its layout and the loading of each stage
(:mod:`experiment.logdir`), and the epoch loop V and M share to train, checkpoint and resume
(:mod:`experiment.training`)."""
