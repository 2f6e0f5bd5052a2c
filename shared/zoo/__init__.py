"""The default model packages that ship inside latentwire (one folder each)."""
