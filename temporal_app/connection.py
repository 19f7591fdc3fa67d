"""Where and how to reach Temporal, read once from the environment by the settings.

Through ``temporalio.envconfig``, so the standard variables and the TOML profiles that the
``temporal`` CLI uses work here too (``TEMPORAL_CONFIG_FILE``, ``TEMPORAL_PROFILE``,
``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``,
``TEMPORAL_TLS_CLIENT_CERT_PATH``/``_DATA``, ``TEMPORAL_TLS_CLIENT_KEY_PATH``/``_DATA``,
``TEMPORAL_TLS_SERVER_CA_CERT_PATH``/``_DATA``, ``TEMPORAL_TLS_SERVER_NAME``,
``TEMPORAL_GRPC_META_*``); the environment wins over the profile, as in the CLI. This project's
older names still work: ``TEMPORAL_TLS_CLIENT_CERT``, ``TEMPORAL_TLS_CLIENT_KEY`` (and
``TEMPORAL_TLS_SERVER_CA_CERT``) are paths, and ``TEMPORAL_TLS`` takes the same words as every
other boolean setting here (1/0, true/false, on/off, yes/no).

A configuration that cannot work (a client certificate without its key, a file that cannot be
read or is not PEM, a profile that does not exist) is not raised here: the settings must load
for ``manage.py`` to say anything at all. It becomes ``problem``, one line, which the system
check (``temporal_app.E001``), ``run_workers`` and the first connection report.

No Django here: the settings module calls it before Django is configured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

from temporalio.envconfig import ClientConfigProfile, ClientConfigTLS
from temporalio.service import TLSConfig

DEFAULT_ADDRESS = "localhost:7233"
DEFAULT_NAMESPACE = "default"

TRUE_WORDS = {"1", "true", "yes", "y", "on", "ok"}
FALSE_WORDS = {"0", "false", "no", "n", "off", ""}

# This project's names -> Temporal's standard names (both work; setting both differently is an error).
LEGACY_PATH_NAMES = {
    "TEMPORAL_TLS_CLIENT_CERT": "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY": "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT": "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
}

CERT_WITHOUT_KEY = "a TLS client certificate is set but no client key (mTLS needs both: set TEMPORAL_TLS_CLIENT_KEY)"
KEY_WITHOUT_CERT = "a TLS client key is set but no client certificate (mTLS needs both: set TEMPORAL_TLS_CLIENT_CERT)"
TLS_OFF_WITH_FILES = "TEMPORAL_TLS is off but TLS certificates or a server name are set"
UNREADABLE = "{what} {path} cannot be read ({reason})"
NOT_PEM = "{what} {path} is not a PEM file (no '-----BEGIN' line)"
NOT_BOOLEAN = "TEMPORAL_TLS={value!r} is not a boolean (use 1 or 0)"
CONFLICT = "{legacy} and {standard} are both set, to different files; keep one"
NO_CONFIG_FILE = "TEMPORAL_CONFIG_FILE={path} cannot be read ({reason})"


@dataclass(frozen=True)
class TemporalConnection:
    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    api_key: str = ""
    tls: Union[bool, TLSConfig] = False
    rpc_metadata: Mapping[str, str] = field(default_factory=dict)
    profile: str = ""  # the TOML profile used, if any
    problem: str = ""  # one line: why this configuration cannot work ("" when it can)

    @property
    def uses_tls(self) -> bool:
        return self.tls is not False

    def connect_kwargs(self) -> dict:
        """Keyword arguments for ``temporalio.client.Client.connect`` (after the target host)."""
        return {
            "namespace": self.namespace,
            "api_key": self.api_key or None,
            "tls": self.tls,
            "rpc_metadata": dict(self.rpc_metadata),
        }


class _Problem(Exception):
    pass


def _bool(value: str) -> bool:
    word = value.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise _Problem(NOT_BOOLEAN.format(value=value))


def _standard_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment as envconfig reads it: our older names mapped to the standard ones."""
    env = {key: value for key, value in environ.items() if key.startswith("TEMPORAL_")}
    for legacy, standard in LEGACY_PATH_NAMES.items():
        value = env.pop(legacy, "")
        if not value:
            continue
        if env.get(standard) and env[standard] != value:
            raise _Problem(CONFLICT.format(legacy=legacy, standard=standard))
        env[standard] = value
    if "TEMPORAL_TLS" in env:
        # Our words (on/off, yes/no...) as the envconfig parser takes them (true/false only).
        env["TEMPORAL_TLS"] = "true" if _bool(env["TEMPORAL_TLS"]) else "false"
    config_file = env.get("TEMPORAL_CONFIG_FILE", "")
    if config_file:  # envconfig silently ignores a missing file: a typo would go unnoticed
        try:
            Path(config_file).read_bytes()
        except OSError as err:
            raise _Problem(NO_CONFIG_FILE.format(path=config_file, reason=err.strerror or err)) from None
    return {key: value for key, value in env.items() if value != ""}


def _read(source, what: str) -> Optional[bytes]:
    if source is None:
        return None
    if isinstance(source, Path):
        try:
            data = source.read_bytes()
        except OSError as err:
            raise _Problem(UNREADABLE.format(what=what, path=source, reason=err.strerror or err)) from None
        where = str(source)
    else:
        data = source.encode() if isinstance(source, str) else bytes(source)
        where = "(inline data)"
    if b"-----BEGIN" not in data:
        raise _Problem(NOT_PEM.format(what=what, path=where))
    return data


def _tls(profile: ClientConfigProfile) -> Union[bool, TLSConfig]:
    tls: Optional[ClientConfigTLS] = profile.tls
    has_api_key = bool(profile.api_key)
    if tls is None:
        return has_api_key  # an API key turns TLS on, with the system's roots
    has_files = any(x is not None for x in (tls.client_cert, tls.client_private_key, tls.server_root_ca_cert))
    if tls.disabled:
        if has_files or tls.server_name:
            raise _Problem(TLS_OFF_WITH_FILES)
        return False
    if (tls.client_cert is None) != (tls.client_private_key is None):
        raise _Problem(CERT_WITHOUT_KEY if tls.client_private_key is None else KEY_WITHOUT_CERT)
    if not has_files and not tls.server_name:
        return True  # TEMPORAL_TLS=1 alone: TLS with the system's roots
    return TLSConfig(
        server_root_ca_cert=_read(tls.server_root_ca_cert, "the server CA certificate"),
        domain=tls.server_name or None,
        client_cert=_read(tls.client_cert, "the TLS client certificate"),
        client_private_key=_read(tls.client_private_key, "the TLS client key"),
    )


def load_connection(environ: Optional[Mapping[str, str]] = None) -> TemporalConnection:
    """The connection the environment (and the TOML profile it names) describes."""
    environ = os.environ if environ is None else environ
    profile_name = environ.get("TEMPORAL_PROFILE", "")
    try:
        env = _standard_env(environ)
        try:
            profile = ClientConfigProfile.load(profile=profile_name or None, override_env_vars=env)
        except Exception as err:  # the bridge's ConfigError: unknown profile, bad TOML
            raise _Problem(f"Temporal client configuration: {str(err).strip().splitlines()[0]}") from None
        tls = _tls(profile)
    except _Problem as problem:
        return TemporalConnection(
            address=environ.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS,
            namespace=environ.get("TEMPORAL_NAMESPACE") or DEFAULT_NAMESPACE,
            profile=profile_name,
            problem=str(problem),
        )
    return TemporalConnection(
        address=profile.address or DEFAULT_ADDRESS,
        namespace=profile.namespace or DEFAULT_NAMESPACE,
        api_key=profile.api_key or "",
        tls=tls,
        rpc_metadata=dict(profile.grpc_meta),
        profile=profile_name,
    )
