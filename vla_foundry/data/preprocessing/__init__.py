"""Ray jobs turning robot episodes, text and image captions into training shards (docs/formats.md §1-5)."""
