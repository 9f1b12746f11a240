"""Analysis of trained models: prediction, inspection, evaluation, export."""
