"""`toy_act`: a tiny ACT-like regression policy. Importing the package registers its params, model and batch
handler (`--plugins toy_policies.act`)."""

from toy_policies.act import model, params  # noqa: F401  (registration)
