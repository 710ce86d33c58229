"""The decode stage: posteriors of every set, the weights tuned on dev, hypotheses written for scoring."""
