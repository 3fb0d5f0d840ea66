"""Data: dataset planning, streaming pipelines per modality, processors and preprocessing jobs."""
