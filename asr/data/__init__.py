"""Audio and the records that point at it: reading and checking audio, manifests and Kaldi folders,
waveform augmentation, padding and length-grouped batches."""
