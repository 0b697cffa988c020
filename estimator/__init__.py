"""DeepRest estimator: call-path features, quantile models, synthesizer, evaluation (no I/O)."""
