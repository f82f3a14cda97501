"""Training data: manifest, decoding, window sampling, augmentation, demo-data synthesis."""
