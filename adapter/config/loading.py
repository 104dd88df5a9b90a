"""Reading the config file: TOML to validated models, relative paths made absolute.

Relative paths are resolved against the config file's folder, so a config
works the same whichever directory the scheduler starts the adapter from.
A file that cannot be read, is not TOML or does not validate becomes a
``ConfigError`` naming the file, the key and the fix, never a traceback
(issue 2 §2).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pydantic

from adapter import errors, paths
from adapter.config.explain import explain
from adapter.config.sections import Config


def load_config(path: Path) -> Config:
    """Read and validate a config file; raise ConfigError that names key and fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise errors.ConfigError(
            f"{path}: file not found; copy config.example.toml there or pass --config PATH"
        ) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigError(f"{path}: cannot read the config file ({exc})") from exc
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise errors.ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return config_from_dict(raw, base_dir=path.parent.resolve(), source=path)


def config_from_dict(raw: dict[str, Any], *, base_dir: Path, source: Path | None = None) -> Config:
    """Validate a config mapping; relative paths are resolved against ``base_dir``."""
    label = str(source) if source else "config"
    try:
        config = Config.model_validate(raw)
    except pydantic.ValidationError as exc:
        raise errors.ConfigError(explain(label, exc, raw)) from None
    return _resolve_paths(config, base_dir).model_copy(update={"source_file": source})


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base_dir / p).resolve()

    mappings = resolve(config.study.mappings)
    sites = [
        site.model_copy(
            update={"roster": resolve(site.roster), "source": site.source.resolved(resolve, mappings)}
        )
        for site in config.sites
    ]
    store_url = _resolve_sqlite_url(config.store.url, base_dir)
    privacy = config.privacy
    if privacy.hmac_key_file is not None:
        privacy = privacy.model_copy(update={"hmac_key_file": resolve(privacy.hmac_key_file)})
    return config.model_copy(
        update={
            "study": config.study.model_copy(
                update={
                    "mappings": mappings,
                    "overrides": resolve(config.study.overrides)
                    if config.study.overrides is not None
                    else paths.default_overrides_dir(store_url, base_dir),
                }
            ),
            "store": config.store.model_copy(update={"url": store_url}),
            "privacy": privacy,
            "sites": sites,
            "repository": config.repository.resolved(resolve),
            "console": config.console.model_copy(
                update={"session_secret_file": resolve(config.console.session_secret_file)}
            ),
        }
    )


def _resolve_sqlite_url(url: str, base_dir: Path) -> str:
    """``sqlite:///state.db`` means next to the config file, not the cwd."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + str(base_dir / url[len(prefix) :])
    return url
