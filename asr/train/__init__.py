"""Training: config and schedule, data and batches, the Trainer, DDP, SpecAugment, curves and the train stage."""
