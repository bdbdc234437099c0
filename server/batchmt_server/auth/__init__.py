"""API keys and the HTTP front's security settings, and the `batchmt-server keys` command."""
