"""A user's own package of policies, outside vla_foundry (loaded with `--plugins toy_policies.act`)."""
