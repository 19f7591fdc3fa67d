"""Temporal connection settings (temporal_app/connection.py): Temporal's standard variables and
the CLI's TOML profiles through temporalio.envconfig, this project's older names, and one clear
line for a configuration that cannot work."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from temporal_app.connection import (
    CERT_WITHOUT_KEY,
    KEY_WITHOUT_CERT,
    TLS_OFF_WITH_FILES,
    load_connection,
)

ROOT = Path(__file__).resolve().parents[2]
PEM_CERT = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = b"-----BEGIN PRIVATE" + b" KEY-----\nMIIE\n-----END PRIVATE" + b" KEY-----\n"


@pytest.fixture
def pem(tmp_path):
    (tmp_path / "client.pem").write_bytes(PEM_CERT)
    (tmp_path / "client.key").write_bytes(PEM_KEY)
    (tmp_path / "ca.pem").write_bytes(PEM_CERT)
    return tmp_path


def test_nothing_set_is_the_local_dev_server():
    conn = load_connection({"HOME": "/nonexistent"})
    assert (conn.address, conn.namespace, conn.api_key, conn.tls, conn.problem) == (
        "localhost:7233",
        "default",
        "",
        False,
        "",
    )


def test_todays_names_still_work(pem):
    conn = load_connection(
        {
            "TEMPORAL_ADDRESS": "temporal.internal:7233",
            "TEMPORAL_NAMESPACE": "orders",
            "TEMPORAL_TLS_CLIENT_CERT": str(pem / "client.pem"),
            "TEMPORAL_TLS_CLIENT_KEY": str(pem / "client.key"),
        }
    )
    assert conn.problem == ""
    assert (conn.address, conn.namespace) == ("temporal.internal:7233", "orders")
    assert isinstance(conn.tls, TLSConfig)
    assert conn.tls.client_cert == PEM_CERT and conn.tls.client_private_key == PEM_KEY
    assert conn.tls.server_root_ca_cert is None and conn.tls.domain is None


def test_an_api_key_turns_tls_on_unless_tls_is_off():
    assert load_connection({"TEMPORAL_API_KEY": "k"}).tls is True
    assert load_connection({"TEMPORAL_API_KEY": "k"}).api_key == "k"
    assert load_connection({"TEMPORAL_API_KEY": "k", "TEMPORAL_TLS": "0"}).tls is False


@pytest.mark.parametrize(
    "word,expected",
    [
        ("1", True),
        ("on", True),
        ("yes", True),
        ("true", True),
        ("0", False),
        ("off", False),
        ("no", False),
        ("false", False),
    ],
)
def test_tls_takes_the_same_words_as_every_other_boolean(word, expected):
    assert load_connection({"TEMPORAL_TLS": word}).tls is expected


def test_tls_that_is_not_a_boolean_is_a_problem():
    assert load_connection({"TEMPORAL_TLS": "maybe"}).problem == "TEMPORAL_TLS='maybe' is not a boolean (use 1 or 0)"


def test_server_ca_and_sni(pem):
    conn = load_connection(
        {"TEMPORAL_TLS_SERVER_CA_CERT": str(pem / "ca.pem"), "TEMPORAL_TLS_SERVER_NAME": "temporal.internal"}
    )
    assert isinstance(conn.tls, TLSConfig)
    assert conn.tls.server_root_ca_cert == PEM_CERT and conn.tls.domain == "temporal.internal"
    standard = load_connection({"TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(pem / "ca.pem")})
    assert standard.tls.server_root_ca_cert == PEM_CERT


def test_temporals_standard_names_and_inline_data(pem):
    conn = load_connection(
        {
            "TEMPORAL_TLS_CLIENT_CERT_DATA": PEM_CERT.decode(),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(pem / "client.key"),
            "TEMPORAL_GRPC_META_X_TENANT": "orders",
        }
    )
    assert conn.problem == ""
    assert conn.tls.client_cert == PEM_CERT and conn.tls.client_private_key == PEM_KEY
    assert conn.rpc_metadata == {"x-tenant": "orders"}


@pytest.mark.parametrize(
    "env,problem",
    [
        ({"TEMPORAL_TLS_CLIENT_CERT": "{d}/client.pem"}, CERT_WITHOUT_KEY),
        ({"TEMPORAL_TLS_CLIENT_KEY": "{d}/client.key"}, KEY_WITHOUT_CERT),
        ({"TEMPORAL_TLS_CLIENT_CERT_PATH": "{d}/client.pem"}, CERT_WITHOUT_KEY),
        ({"TEMPORAL_TLS": "0", "TEMPORAL_TLS_SERVER_NAME": "x"}, TLS_OFF_WITH_FILES),
        (
            {"TEMPORAL_TLS_CLIENT_CERT": "{d}/missing.pem", "TEMPORAL_TLS_CLIENT_KEY": "{d}/client.key"},
            "the TLS client certificate {d}/missing.pem cannot be read (No such file or directory)",
        ),
        ({"TEMPORAL_TLS_CLIENT_CERT": "{d}/client.key", "TEMPORAL_TLS_CLIENT_KEY": "{d}/ca.pem"}, ""),
        (
            {"TEMPORAL_TLS_CLIENT_CERT": "{d}/plain.txt", "TEMPORAL_TLS_CLIENT_KEY": "{d}/client.key"},
            "the TLS client certificate {d}/plain.txt is not a PEM file (no '-----BEGIN' line)",
        ),
        (
            {
                "TEMPORAL_TLS_CLIENT_CERT": "{d}/client.pem",
                "TEMPORAL_TLS_CLIENT_CERT_PATH": "{d}/ca.pem",
                "TEMPORAL_TLS_CLIENT_KEY": "{d}/client.key",
            },
            "TEMPORAL_TLS_CLIENT_CERT and TEMPORAL_TLS_CLIENT_CERT_PATH are both set, to different files; keep one",
        ),
        (
            {"TEMPORAL_CONFIG_FILE": "{d}/nope.toml"},
            "TEMPORAL_CONFIG_FILE={d}/nope.toml cannot be read (No such file or directory)",
        ),
        (
            {"TEMPORAL_CONFIG_FILE": "{d}/temporal.toml", "TEMPORAL_PROFILE": "staging"},
            "Temporal client configuration: Profile 'staging' not found",
        ),
    ],
)
def test_a_configuration_that_cannot_work_is_one_line(pem, env, problem):
    (pem / "plain.txt").write_text("not a certificate")
    (pem / "temporal.toml").write_text('[profile.default]\naddress = "a:1"\n')
    conn = load_connection({key: value.format(d=pem) for key, value in env.items()})
    assert conn.problem == problem.format(d=pem)
    assert "\n" not in conn.problem


def test_a_cli_profile_is_shared_and_the_environment_wins(pem):
    toml = pem / "temporal.toml"
    toml.write_text(f"""
[profile.default]
address = "localhost:7233"

[profile.prod]
address = "orders.a1b2c.tmprl.cloud:7233"
namespace = "orders.a1b2c"

[profile.prod.tls]
client_cert_path = "{pem / "client.pem"}"
client_key_path = "{pem / "client.key"}"
server_name = "orders.a1b2c.tmprl.cloud"
""")
    conn = load_connection({"TEMPORAL_CONFIG_FILE": str(toml), "TEMPORAL_PROFILE": "prod"})
    assert conn.problem == ""
    assert (conn.address, conn.namespace, conn.profile) == ("orders.a1b2c.tmprl.cloud:7233", "orders.a1b2c", "prod")
    assert conn.tls.client_cert == PEM_CERT and conn.tls.domain == "orders.a1b2c.tmprl.cloud"
    over = load_connection(
        {"TEMPORAL_CONFIG_FILE": str(toml), "TEMPORAL_PROFILE": "prod", "TEMPORAL_NAMESPACE": "other"}
    )
    assert over.namespace == "other" and over.address == "orders.a1b2c.tmprl.cloud:7233"
    assert load_connection({"TEMPORAL_CONFIG_FILE": str(toml)}).address == "localhost:7233"


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "DEBUG": "1", **env},
        cwd=ROOT,
    )


def test_half_configured_mtls_is_one_line_from_check_and_run_workers(pem):
    env = {"TEMPORAL_TLS_CLIENT_CERT": str(pem / "client.pem")}
    check = _run("check", env=env)
    assert check.returncode == 1
    assert f"(temporal_app.E001) Temporal connection settings: {CERT_WITHOUT_KEY}" in check.stderr
    workers = _run("run_workers", env=env)  # its system checks find it first
    assert workers.returncode == 1
    assert f"(temporal_app.E001) Temporal connection settings: {CERT_WITHOUT_KEY}" in workers.stderr
    assert "Traceback" not in workers.stderr
    workers = _run("run_workers", "--skip-checks", env=env)
    assert workers.returncode == 1
    assert workers.stderr.strip().splitlines()[-1] == f"CommandError: Temporal connection settings: {CERT_WITHOUT_KEY}"
    assert "Traceback" not in workers.stderr
    assert _run("check", env={}).returncode == 0  # the control: the same command passes without it


@pytest.mark.django_db
def test_the_first_connection_refuses_a_configuration_that_cannot_work(settings):
    """Web code reaches Temporal through the client thread: the person is told, nothing hangs."""
    from temporal_app.client import TemporalMisconfigured, client_thread

    settings.TEMPORAL_CONFIG_PROBLEM = CERT_WITHOUT_KEY
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"  # a key of its own: no cached client is reused
    with pytest.raises(TemporalMisconfigured, match="mTLS needs both"):
        client_thread.run(lambda client: client.count_workflows(), timeout=5)


@pytest.mark.temporal
def test_one_profile_for_the_cli_and_the_app(temporal_server, tmp_path):
    """The same TOML profile takes the `temporal` CLI and this app to the same server."""
    import asyncio

    from temporalio.client import Client

    from devtools.devserver import temporal_binary

    toml = tmp_path / "temporal.toml"
    toml.write_text(f'[profile.shared]\naddress = "{temporal_server}"\nnamespace = "default"\n')
    env = {"TEMPORAL_CONFIG_FILE": str(toml), "TEMPORAL_PROFILE": "shared", "HOME": str(tmp_path)}
    conn = load_connection(env)
    assert conn.problem == "" and conn.address == temporal_server

    async def reach() -> str:
        client = await Client.connect(conn.address, **conn.connect_kwargs())
        return (await client.service_client.check_health()) and client.namespace

    assert asyncio.run(reach()) == "default"
    cli = subprocess.run(
        [temporal_binary(), "operator", "namespace", "describe", "--namespace", "default"],
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "default" in cli.stdout
    wrong = subprocess.run(
        [temporal_binary(), "operator", "namespace", "describe", "--namespace", "default"],
        env={"PATH": os.environ["PATH"], **env, "TEMPORAL_PROFILE": "missing"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong.returncode != 0  # the control: the CLI really reads the profile
