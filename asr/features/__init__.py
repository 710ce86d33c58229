"""The front end: MFCC/fbank and CMVN in numpy (the same code every recognizer runs), the features stage
and its store."""
