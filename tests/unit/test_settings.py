"""Settings are built from the mapping they are given, never from ambient environment variables."""

from __future__ import annotations

import os
import pwd

from estate.settings import Settings


def test_the_actor_defaults_to_the_os_account_not_to_an_environment_variable() -> None:
    account = f"local:{pwd.getpwuid(os.getuid()).pw_name}"  # embedded mode: the OS account, marked local
    assert Settings.from_environ({}).actor == account, "with $USER unset the OS account is recorded"
    assert Settings.from_environ({"USER": "mallory"}).actor == account, "$USER is anyone's to set"
    assert Settings.from_environ({"ESTATE_ACTOR": "alex"}).actor == "alex"
