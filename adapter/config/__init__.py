"""The one TOML config file, loaded into pydantic models.

Site IT teams edit this file by hand, so every error must say which file,
which key and what is expected, never show a traceback (issue 2 §2).
``sections`` holds the models of the tables, ``loading`` reads the file and
resolves relative paths against its folder, ``explain`` turns validation
errors into lines a person can act on.  Callers use this package's names
(``config_mod.Config``, ``config_mod.load_config``), not its modules.
"""

from adapter.config.loading import config_from_dict, load_config
from adapter.config.sections import (
    Config,
    ConsoleConfig,
    PrivacyConfig,
    ScheduleConfig,
    ServiceConfig,
    SiteConfig,
    StoreConfig,
    StudyConfig,
    SyncConfig,
)

__all__ = [
    "Config",
    "ConsoleConfig",
    "PrivacyConfig",
    "ScheduleConfig",
    "ServiceConfig",
    "SiteConfig",
    "StoreConfig",
    "StudyConfig",
    "SyncConfig",
    "config_from_dict",
    "load_config",
]
