"""Running recipes: the stage runner and its cache, recipes bound to a work directory, cross-validation."""
