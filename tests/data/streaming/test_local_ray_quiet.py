"""A local Ray started by this project keeps token authentication on without Ray's warning about choosing it."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture
def clean_ray_env(monkeypatch):
    # setenv first: the undo then restores the variables as they were, whatever Ray or the code sets meanwhile.
    for name in ("RAY_AUTH_MODE", "RAY_ENABLE_UV_RUN_RUNTIME_ENV"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def _ray_local_start_auth(caplog) -> tuple[bool, list[str]]:
    """What ray.init() of a new local cluster decides about token auth (Ray's own code), and what it logs."""
    from ray._private.authentication import authentication_token_setup

    # Ray's loggers do not propagate to the root logger: listen on the module's own logger.
    logger = authentication_token_setup.logger
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger=logger.name):
            enabled = authentication_token_setup.enable_token_auth_by_default()
    finally:
        logger.removeHandler(caplog.handler)
    return enabled, [r.getMessage() for r in caplog.records]


def test_ray_by_itself_warns_on_every_local_start(clean_ray_env, caplog):
    # The noise being removed: Ray's default turns token auth on and says so in a warning.
    enabled, logged = _ray_local_start_auth(caplog)
    assert enabled and any("Token authentication is enabled for this Ray cluster" in m for m in logged)


def test_the_prepared_environment_keeps_token_auth_on_without_the_warning(clean_ray_env, caplog):
    import os

    from vla_foundry.local_ray import prepare_local_ray_environment

    prepare_local_ray_environment()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    enabled, logged = _ray_local_start_auth(caplog)
    assert enabled
    assert not any("Token authentication" in m for m in logged)


def test_an_auth_mode_the_user_set_is_kept(clean_ray_env, monkeypatch):
    import os

    from vla_foundry.local_ray import prepare_local_ray_environment

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    prepare_local_ray_environment()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"
