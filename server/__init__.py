"""The latentwire server (FastAPI): hosts encoders and the super-resolution generator."""
