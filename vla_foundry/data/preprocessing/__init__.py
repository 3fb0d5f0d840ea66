"""Ray jobs turning robot episodes, text and image captions into training shards (FORMATS.md §1-5)."""
