"""Text and its units: tokenizers (characters, subwords, phones), phone sets, pronunciation lexicons
(CMUdict), the G2P, the lexicon stage, and a transcript with its timed words."""
