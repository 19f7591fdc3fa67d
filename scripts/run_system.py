"""`make run`: bring the whole order back office up in one terminal, and down with one Ctrl-C.

Starts, in order: Postgres (DATABASE_URL, or an embedded one under var/postgres), the Temporal
dev server (var/temporal.db, Web UI), migrations, the local-only demo users (DEBUG only), the
workers (`manage.py run_workers`) and the web app (`manage.py runserver`). Each waits for the one
before to be ready: Temporal's port and Web UI, the workers' `/readyz` (their health endpoint, on
a port of their own), the web app's login page. Each child runs in its own process group, so a
Ctrl-C in the terminal reaches only this script, which then stops the children in reverse order
(web, workers, Temporal, Postgres) and waits for each, with a bounded wait and SIGKILL as the last
resort. Nothing is left running. Starting, watching and stopping them is devtools.supervise's.

Everything persists under the var directory, so running it again resumes where it stopped: an
order that was waiting for review is still waiting, in Temporal and in Postgres.

Configuration (environment, or .env): see ENVIRONMENT below and the README's table.
This script imports no Django: Django settings would start their own embedded Postgres.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

# noqa: E402 below: these need BASE_DIR on sys.path.
from devtools.devserver import DevServerError, start_dev_server, temporal_binary  # noqa: E402
from devtools.supervise import (  # noqa: E402
    Child,
    ChildExited,
    HttpReady,
    NotReady,
    Readiness,
    Supervisor,
    describe_exit,
    embedded_postgres_running,
    pid_alive,
    port_in_use,
    postmaster_pid,
    stop_embedded_postgres,
    worker_health,
)

ENVIRONMENT = {
    "RUN_VAR_DIR": "where Temporal's db, the embedded Postgres and the logs live (default: var)",
    "WEB_HOST": "address the web app binds to (default: 127.0.0.1)",
    "WEB_PORT": "web app port (default: 8000)",
    "TEMPORAL_ADDRESS": "host:port of Temporal; a local address runs the dev server there (default: localhost:7233)",
    "TEMPORAL_UI_PORT": "Temporal Web UI port of the dev server (default: 8233)",
    "RUN_TEMPORAL_DEV_SERVER": "0 to use an already running Temporal at TEMPORAL_ADDRESS (default: 1 when local)",
    "DATABASE_URL": "Postgres to use; unset: embedded Postgres under RUN_VAR_DIR/postgres",
    "WORKER_HEALTH_PORT": "port of the workers' /readyz and /healthz (default: a free port)",
    "DEBUG": "1 (default for make run) creates the demo users; 0 never does",
    "RUN_WRITE_DOTENV": "0 to not create .env from .env.example on the first run (default: 1)",
    "TEMPORAL_VERSION_CURRENT_ON_START": "1 (default for make run) makes the workers' version current as they start",
}

LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]", "0.0.0.0"}
# Marks every process this run starts (inherited through the environment), so a test or CI can
# prove that none is left: no process may carry ORDERWEB_RUN_DIR=<this var dir> after we exit.
RUN_MARKER = "ORDERWEB_RUN_DIR"
START_TIMEOUT = float(os.environ.get("RUN_START_TIMEOUT", "120"))


class RunError(Exception):
    """A problem a person can fix; printed as one line, exit status 1."""


def say(message: str = "") -> None:
    print(message, flush=True)


def fail_line(message: str) -> None:
    print(f"make run: {message}", file=sys.stderr, flush=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "y", "on", "ok"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        return int(value)
    except ValueError:
        raise RunError(f"{name}={value!r} is not a port number") from None


def read_dotenv() -> None:
    """Read .env like Django settings do (never overriding the real environment), so that this
    script and the processes it starts agree on DATABASE_URL, TEMPORAL_ADDRESS and DEBUG."""
    from orderweb.dotenv import read_dotenv

    read_dotenv(BASE_DIR / ".env")


@dataclass
class System:
    var_dir: Path
    log_dir: Path
    web_host: str
    web_port: int
    temporal_address: str
    temporal_ui_url: str
    run_dev_server: bool
    dev_server_port: int
    ui_port: int
    env: dict[str, str]
    worker_health_host: str = "127.0.0.1"
    worker_health_port: Optional[int] = None  # None: a free port
    database_url: str = ""
    embedded_pgdata: Optional[Path] = None
    postgres_started_here: bool = False
    supervisor: Supervisor = field(default_factory=lambda: Supervisor(say=say))

    @property
    def state_file(self) -> Path:
        return self.var_dir / "run" / "system.json"

    @property
    def web_url(self) -> str:
        host = "localhost" if self.web_host in ("127.0.0.1", "0.0.0.0", "::1") else self.web_host
        return f"http://{host}:{self.web_port}"


# -- configuration and preflight ---------------------------------------------------------------


def ensure_dotenv() -> None:
    """A fresh checkout gets .env from .env.example (DEBUG=1), so that every `manage.py`
    command a person runs next to `make run` (demo_order, createsuperuser...) uses the same
    local settings without exporting anything."""
    dotenv, example = BASE_DIR / ".env", BASE_DIR / ".env.example"
    if dotenv.exists() or not example.exists() or not env_bool("RUN_WRITE_DOTENV", True):
        return
    dotenv.write_text(example.read_text())
    say("Created .env from .env.example (local settings, DEBUG=1; edit or delete it as you like).")


def configure() -> System:
    ensure_dotenv()
    read_dotenv()
    var_dir = Path(os.environ.get("RUN_VAR_DIR") or BASE_DIR / "var").resolve()
    os.environ.setdefault("DEBUG", "1")  # make run is a local run
    web_host = os.environ.get("WEB_HOST") or "127.0.0.1"
    web_port = env_int("WEB_PORT", 8000)
    ui_port = env_int("TEMPORAL_UI_PORT", 8233)
    worker_health_port = env_int("WORKER_HEALTH_PORT", 0) or None

    address = os.environ.get("TEMPORAL_ADDRESS") or "localhost:7233"
    host, _, port_text = address.rpartition(":")
    if not host or not port_text.isdigit():
        raise RunError(f"TEMPORAL_ADDRESS={address!r} is not host:port")
    local = host.lower() in LOCAL_HOSTS
    run_dev_server = local and env_bool("RUN_TEMPORAL_DEV_SERVER", True)
    if run_dev_server:
        address = f"127.0.0.1:{port_text}"  # the dev server binds IPv4 loopback
    # We run the dev server's UI, so we know where it is; otherwise the settings' value holds.
    ui_url = (
        f"http://localhost:{ui_port}"
        if run_dev_server
        else (os.environ.get("TEMPORAL_UI_URL") or "http://localhost:8233")
    )

    env = dict(os.environ)
    env.update(
        {
            RUN_MARKER: str(var_dir),
            "TEMPORAL_ADDRESS": address,
            "TEMPORAL_UI_URL": ui_url,
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Each edit of the workflow code is a new worker version (temporal_app/versioning.py): make
    # the one this run starts current, so the orders parked under the last run move on to it.
    env.setdefault("TEMPORAL_VERSION_CURRENT_ON_START", "1")
    if not env_bool("DEBUG", False):
        # make run serves plain http on this machine: production's https-only cookies and
        # redirect would lock a person out. A real deployment sets these itself.
        for name in ("SECURE_SSL_REDIRECT", "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
            env.setdefault(name, "0")
    os.environ[RUN_MARKER] = str(var_dir)  # inherited by the embedded Postgres too
    return System(
        var_dir=var_dir,
        log_dir=var_dir / "log",
        web_host=web_host,
        web_port=web_port,
        temporal_address=address,
        temporal_ui_url=ui_url,
        run_dev_server=run_dev_server,
        dev_server_port=int(port_text),
        ui_port=ui_port,
        env=env,
        worker_health_host=os.environ.get("WORKER_HEALTH_HOST") or "127.0.0.1",
        worker_health_port=worker_health_port,
    )


def preflight(system: System) -> None:
    """Everything that would fail half-way, checked before anything starts."""
    if system.state_file.exists():
        try:
            previous = json.loads(system.state_file.read_text())
        except (OSError, ValueError):
            previous = {}
        pid = previous.get("pid")
        if pid and pid != os.getpid() and pid_alive(pid):
            raise RunError(
                f"the system is already running from {system.var_dir} (pid {pid}); "
                "stop it with Ctrl-C in its terminal, or set RUN_VAR_DIR"
            )
    ports = [("web", system.web_host, system.web_port, "WEB_PORT")]
    if system.run_dev_server:
        ports += [
            ("Temporal", "127.0.0.1", system.dev_server_port, "TEMPORAL_ADDRESS=localhost:<port>"),
            ("Temporal Web UI", "127.0.0.1", system.ui_port, "TEMPORAL_UI_PORT"),
        ]
    if system.worker_health_port is not None:
        ports.append(("worker health", system.worker_health_host, system.worker_health_port, "WORKER_HEALTH_PORT"))
    for what, host, port, knob in ports:
        check_host = "127.0.0.1" if host == "0.0.0.0" else host
        if port_in_use(check_host, port):
            raise RunError(f"port {port} ({what}) is already in use on {check_host}; set {knob} to use another")
    if system.run_dev_server:
        try:
            temporal_binary()
        except DevServerError as err:
            raise RunError(str(err)) from None
    needed = [
        ("django", "Django", "requirements.txt"),
        ("temporalio", "temporalio", "requirements.txt"),
        ("psycopg", "psycopg", "requirements.txt"),
    ]
    if not os.environ.get("DATABASE_URL"):
        needed.append(("embedded_postgres", "embedded-postgres", "requirements-dev.txt"))
    for module, package, requirements in needed:
        try:
            __import__(module)
        except ImportError:
            raise RunError(f"{package} is missing: run `make venv` (pip install -r {requirements})") from None
    if not env_bool("DEBUG", False) and not os.environ.get("SECRET_KEY"):
        raise RunError("DEBUG is off, so SECRET_KEY must be set (or run with DEBUG=1)")
    if os.environ.get("DATABASE_URL"):
        check_database_url(os.environ["DATABASE_URL"])
    if not system.run_dev_server:
        check_temporal(system.temporal_address)


# -- the components ----------------------------------------------------------------------------


def open_log(system: System, name: str) -> Path:
    """var/log/<name>.log, with a line that says where this run's part of it begins."""
    system.log_dir.mkdir(parents=True, exist_ok=True)
    path = system.log_dir / f"{name}.log"
    with open(path, "ab") as log:
        log.write(f"\n=== make run: {name} starting at {time.strftime('%Y-%m-%d %H:%M:%S')} ===\n".encode())
    return path


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(BASE_DIR))
    except ValueError:
        return str(path)


def start_postgres(system: System) -> str:
    url = os.environ.get("DATABASE_URL", "")
    if url:  # reachable: preflight checked it (and created the database if it was missing)
        system.database_url = url
        return f"DATABASE_URL ({redact(url)})"
    pgdata = system.var_dir / "postgres"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    was_running = embedded_postgres_running(pgdata)
    from devtools.localdb import embedded_database_url

    try:
        url = embedded_database_url(pgdata)
    except Exception as err:  # initdb or pg_ctl failed: its log says why
        raise RunError(
            f"the embedded Postgres did not start ({type(err).__name__}); see {rel(pgdata / 'log')}"
        ) from None
    # localdb leaves the server running when this process exits; shutdown() stops it.
    system.embedded_pgdata = pgdata
    system.postgres_started_here = not was_running
    system.database_url = url
    system.env["DATABASE_URL"] = url
    note = "" if system.postgres_started_here else " (was already running; left running at exit)"
    return f"embedded, data in {rel(pgdata)}{note}"


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def check_database_url(url: str) -> None:
    """Reach the server; create the database if the server is there but the database is not."""
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=5).close()
        return
    except psycopg.OperationalError as err:
        message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if "does not exist" not in message:
            raise RunError(f"Postgres at DATABASE_URL ({redact(url)}) is unreachable: {message}") from None
    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    admin_url = parts._replace(path="/postgres").geturl()
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')
    except psycopg.Error as err:
        raise RunError(f"database {database!r} does not exist and could not be created: {err}") from None


def start_temporal(system: System) -> str:
    if not system.run_dev_server:  # reachable: preflight checked it
        return f"{system.temporal_address} (not started here)"
    db_file = system.var_dir / "temporal.db"
    path = open_log(system, "temporal")
    try:
        process = start_dev_server(
            db_file=db_file, port=system.dev_server_port, ui_port=system.ui_port, log=path, timeout=60
        )
    except DevServerError as err:
        raise RunError(f"the Temporal dev server did not start: {err}; see {rel(path)}") from None
    temporal = system.supervisor.adopt("temporal", process, log_path=path, stop_signal=signal.SIGTERM, stop_timeout=20)
    wait_for_http(temporal, f"http://127.0.0.1:{system.ui_port}/", 30, "the Temporal Web UI")
    return f"dev server on {system.temporal_address}, data in {rel(db_file)}"


def check_temporal(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as err:
        raise RunError(f"Temporal at {address} is unreachable ({err.strerror or err})") from None


def manage(system: System, *args: str, log_name: str, timeout: float) -> str:
    """Run a manage.py command to completion; its output goes to the log (and is returned)."""
    path = open_log(system, log_name)
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        cwd=BASE_DIR,
        env=system.env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
        start_new_session=True,
    )
    with open(path, "ab") as log:
        log.write(result.stdout + result.stderr)
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
        last = lines[-1] if lines else f"exit code {result.returncode}"
        raise RunError(f"manage.py {args[0]} failed: {last} (see {rel(path)})")
    return result.stdout.decode(errors="replace") or "(no output)"


def spawn(
    system: System,
    name: str,
    args: list[str],
    *,
    stop_signal: int,
    stop_timeout: float,
    env: Optional[dict[str, str]] = None,
) -> Child:
    """Start a long-running manage.py command in its own process group, logging to var/log."""
    return system.supervisor.start(
        name,
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        log_path=open_log(system, name),
        env={**system.env, **(env or {})},
        cwd=BASE_DIR,
        stop_signal=stop_signal,
        stop_timeout=stop_timeout,
    )


def wait_until_ready(child: Child, ready: Readiness, timeout: float) -> None:
    try:
        child.wait_ready(ready, timeout)
    except ChildExited as err:
        raise RunError(f"the {child.name} exited with code {err.returncode}: {child.last_line()}") from None
    except NotReady:
        raise RunError(f"the {child.name} did not get ready within {timeout:g} s; see {rel(child.log_path)}") from None


def wait_for_http(child: Child, url: str, timeout: float, what: str) -> None:
    """Any answer but a server error will do: the page is served."""
    try:
        child.wait_ready(HttpReady(url, accept=lambda status: status < 500), timeout)
    except ChildExited as err:
        raise RunError(f"{what} exited with code {err.returncode}") from None
    except NotReady:
        raise RunError(f"{what} did not answer at {url} within {timeout:g} s") from None


# -- stopping ----------------------------------------------------------------------------------


def shutdown(system: System) -> None:
    supervisor = system.supervisor
    supervisor.hurry_on_signals()  # the second Ctrl-C makes every remaining wait short
    if supervisor.children or system.postgres_started_here:
        say("\nStopping (Ctrl-C again to hurry)...")
    supervisor.stop_all(lambda child, code: say(f"  stopped {child.name}"))  # web, workers, Temporal
    if system.postgres_started_here and system.embedded_pgdata is not None:
        stop_embedded_postgres(system.embedded_pgdata, hurry=lambda: supervisor.hurry, say=say)
        say("  stopped postgres")
    system.state_file.unlink(missing_ok=True)


def raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


# -- main --------------------------------------------------------------------------------------


def step(label: str, action) -> str:
    print(f"  {label:<10} ", end="", flush=True)
    started = time.monotonic()
    try:
        detail = action()
    except BaseException:
        print("failed", flush=True)
        raise
    print(f"{detail} ({time.monotonic() - started:.1f} s)", flush=True)
    return detail


def write_state(system: System) -> None:
    system.state_file.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "pid": os.getpid(),
        "var_dir": str(system.var_dir),
        "web_url": system.web_url,
        "temporal_address": system.temporal_address,
        "temporal_ui_url": system.temporal_ui_url,
        "database_url": system.database_url,
        "children": {child.name: child.pid for child in system.supervisor.children},
        "postgres_pid": postmaster_pid(system.embedded_pgdata) if system.embedded_pgdata else None,
    }
    system.state_file.write_text(json.dumps(state, indent=2))


def banner(system: System, debug: bool, users_created: bool) -> None:
    web = system.web_url
    ui = f"{system.temporal_ui_url}/namespaces/{system.env.get('TEMPORAL_NAMESPACE', 'default')}/workflows"
    # The demo is a separate process: it needs whatever differs from the settings' defaults.
    demo_env = ""
    if system.temporal_address != "127.0.0.1:7233":
        demo_env += f"TEMPORAL_ADDRESS={system.temporal_address} TEMPORAL_UI_URL={system.temporal_ui_url} "
    if system.embedded_pgdata is not None and system.var_dir != (BASE_DIR / "var").resolve():
        demo_env += f"DATABASE_URL='{system.database_url}' "
    lines = [
        "",
        "The order back office is running. Press Ctrl-C to stop all of it.",
        "",
        f"  Web app          {web}/",
        f"  Reviews          {web}/reviews/"
        + ("      log in as reviewer / reviewer (or lead / lead)" if users_created else ""),
        f"  Admin            {web}/admin/" + ("        log in as admin / admin" if users_created else ""),
        f"  Temporal Web UI  {ui}",
        f"  Temporal         {system.temporal_address} (namespace {system.env.get('TEMPORAL_NAMESPACE', 'default')})",
        f"  Postgres         {redact(system.database_url)}",
        f"  Logs             {rel(system.log_dir)}/"
        + "{"
        + ",".join(c.name for c in system.supervisor.children)
        + "}.log",
        "",
    ]
    if not debug:
        lines.insert(-1, "  DEBUG is off: no demo users were created (use `manage.py createsuperuser`).")
    lines.append(f"  Run the seed's demo in another terminal:  {demo_env}.venv/bin/python manage.py demo_order")
    lines.append("")
    say("\n".join(lines))


def watch(system: System) -> int:
    """Block until Ctrl-C (exit 0) or until a component dies (exit 1, saying which and why)."""
    while True:
        child = system.supervisor.died()
        if child is not None:
            fail_line(
                f"the {child.name} stopped unexpectedly ({describe_exit(child.exit_code())}): {child.last_line()}"
            )
            return 1
        if (
            system.postgres_started_here
            and system.embedded_pgdata
            and not embedded_postgres_running(system.embedded_pgdata)
        ):
            fail_line(f"the embedded Postgres stopped unexpectedly; see {rel(system.embedded_pgdata / 'log')}")
            return 1
        time.sleep(0.5)


def stop_postgres_only() -> int:
    """`make stop`: stop the embedded Postgres under the var dir (left by tests or commands)."""
    read_dotenv()
    pgdata = Path(os.environ.get("RUN_VAR_DIR") or BASE_DIR / "var").resolve() / "postgres"
    if not stop_embedded_postgres(pgdata):
        say(f"No embedded Postgres is running in {rel(pgdata)}.")
        return 0
    say(f"Stopped the embedded Postgres in {rel(pgdata)}.")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--stop-postgres"]:
        return stop_postgres_only()
    if argv:
        fail_line(
            f"unknown arguments {' '.join(argv)}; configure with environment variables: " + ", ".join(ENVIRONMENT)
        )
        return 2
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        system = configure()
        preflight(system)
    except RunError as err:
        fail_line(str(err))
        return 1
    debug = env_bool("DEBUG", False)
    say(f"Starting the order back office (data in {rel(system.var_dir)}/)")
    code = 0
    try:
        system.var_dir.mkdir(parents=True, exist_ok=True)
        write_state(system)
        step("postgres", lambda: start_postgres(system))
        step("temporal", lambda: start_temporal(system))
        step("migrate", lambda: manage(system, "migrate", "--noinput", log_name="setup", timeout=300) and "done")
        if not debug:
            # DEBUG off: pages link hashed static files that WhiteNoise serves from STATIC_ROOT
            # (var/staticfiles here), so they are collected first, as a deployment does.
            system.env.setdefault("STATIC_ROOT", str(system.var_dir / "staticfiles"))
            step(
                "static",
                lambda: (
                    manage(system, "collectstatic", "--noinput", log_name="setup", timeout=300)
                    and f"collected into {rel(Path(system.env['STATIC_ROOT']))}"
                ),
            )
        # Workers and web boot while the demo users are written (each is a Django start-up).
        # Ready means its /readyz says every worker polls (temporal_app/health.py).
        health_env, workers_ready = worker_health(system.worker_health_host, system.worker_health_port)
        workers = spawn(system, "workers", ["run_workers"], stop_signal=signal.SIGINT, stop_timeout=25, env=health_env)
        # Static files come from WhiteNoise, DEBUG on (from the apps) or off (collected above).
        web = spawn(
            system,
            "web",
            ["runserver", "--noreload", f"{system.web_host}:{system.web_port}"],
            stop_signal=signal.SIGINT,
            stop_timeout=10,
        )
        if debug:
            step(
                "users",
                lambda: (
                    manage(system, "ensure_demo_users", log_name="setup", timeout=120)
                    and "reviewer/reviewer (group reviewer), lead/lead (reviewer, review_lead), "
                    "admin/admin (superuser); local only: DEBUG is on"
                ),
            )
        else:
            say("  users      none: DEBUG is off")
        step("workers", lambda: wait_until_ready(workers, workers_ready, START_TIMEOUT) or "order-tq and shipping-tq")
        local_web = "127.0.0.1" if system.web_host == "0.0.0.0" else system.web_host
        step(
            "web",
            lambda: (
                wait_for_http(
                    web, f"http://{local_web}:{system.web_port}/accounts/login/", START_TIMEOUT, "the web app"
                )
                or f"{system.web_url} (runserver, threaded)"
            ),
        )
        write_state(system)
        banner(system, debug, debug)
        code = watch(system)
    except RunError as err:
        fail_line(str(err))
        code = 1
    except KeyboardInterrupt:
        code = 0
    except subprocess.TimeoutExpired as err:
        fail_line(f"{' '.join(map(str, err.cmd[1:3]))} took longer than {err.timeout:g} s")
        code = 1
    finally:
        shutdown(system)
    say("Stopped." if code == 0 else "Stopped after an error.")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
