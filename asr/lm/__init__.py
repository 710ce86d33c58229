"""Language models: n-gram estimation and ARPA files, CMU Sphinx's binary general English model, and the lm stage."""
