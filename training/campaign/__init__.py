"""Marketing campaigns from a trained model: consent-aware personalised e-mail batches."""
