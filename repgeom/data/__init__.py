"""Built-in dataset descriptors (``*.json``) and their embedded probe sets (``*.npz``)."""
