"""How log-probabilities become text: the decoding options and the searches (greedy, flashlight's beam search
with or without a lexicon). No torch."""
