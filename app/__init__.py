"""The inference API: serves every model file in MODELS_DIR (`app.main:app`)."""
