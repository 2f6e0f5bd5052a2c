"""The light client: decode IRs locally and talk to a latentwire server. Never imports torch."""
