"""dcgan-lab trainables: models, data sets, the training loop, metrics and checkpoints."""
