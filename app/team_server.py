"""`deepsuite server`: a shared MLflow tracking server on a database, for a team.

It is `mlflow server` with a database backend (PostgreSQL is the documented one) and proxied
artifacts: clients send files through the server (`mlflow-artifacts:/`), so they need no access to the
artifact store, only `--tracking-uri http://<server>:<port>`. What this wrapper adds is checking the
things people get wrong before MLflow prints a long traceback: a missing database driver, a database
that does not answer, a busy port, an artifacts folder that cannot be written.

PostgreSQL in two commands (Debian/Ubuntu):
    sudo -u postgres createuser --pwprompt mlflow && sudo -u postgres createdb --owner mlflow mlflow
    export MLFLOW_BACKEND_STORE_URI=postgresql://mlflow:<password>@localhost/mlflow  # not on argv: `ps` shows argv
    deepsuite server --artifacts-destination /srv/mlartifacts --host 0.0.0.0 --port 5000
then on every machine: `deepsuite run <pipeline> --tracking-uri http://<server>:5000`.

`--auth` serves MLflow's own basic-auth app (`mlflow server --app-name basic-auth`): every request needs a
user and password (clients: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD), users live in MLflow's
auth database (basic_auth.db here, or as MLFLOW_AUTH_CONFIG_PATH's ini says), and the first start creates
the admin from MLFLOW_AUTH_ADMIN_PASSWORD.
"""
from __future__ import annotations

import importlib.util
import os
import urllib.parse
from pathlib import Path
from typing import Callable

from deepsuite.common.errors import DeepsuiteError
from deepsuite.common.redaction import redact
from deepsuite.app.ui import NO_GENAI_JOBS, mlflow_cli, run_mlflow_server, url_for
from deepsuite.app.ports import LOOPBACK, ensure_port_free, is_loopback

SCHEMA_READY_TIMEOUT_S = 900.0  # creating the schema on a busy machine took over 3 minutes
SCHEMES = ("postgresql", "mysql", "mssql", "sqlite")
# SQLAlchemy driver name -> (module to import, pip package). SQLAlchemy 2.1 maps postgresql:// to
# psycopg 3; postgresql+psycopg2:// still selects psycopg2.
DRIVERS = {"psycopg": ("psycopg", "psycopg[binary]"), "psycopg2": ("psycopg2", "psycopg2-binary"),
           "mysqldb": ("MySQLdb", "mysqlclient"), "pymysql": ("pymysql", "pymysql"), "pyodbc": ("pyodbc", "pyodbc"),
           "pysqlite": ("sqlite3", None)}


def check_backend(uri: str, connect_timeout_s: int = 10) -> None:
    """Refuse a URI MLflow cannot use, a missing driver, or a database that does not answer."""
    from sqlalchemy import create_engine, text  # MLflow's own database layer
    from sqlalchemy.engine.url import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    scheme = urllib.parse.urlsplit(uri).scheme.partition("+")[0]
    try:
        if scheme not in SCHEMES:
            raise ArgumentError(scheme)
        url = make_url(uri)
        driver = url.get_dialect().driver
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise DeepsuiteError(f"--backend-store-uri {redact(uri)}: use a database URI such as "
                             "postgresql://user:password@host:5432/mlflow (schemes: "
                             f"{', '.join(SCHEMES)})") from None
    module, package = DRIVERS.get(driver, (driver, driver))
    if importlib.util.find_spec(module) is None:
        raise DeepsuiteError(f"{redact(uri)} needs the {module} database driver: pip install '{package}'")
    args = {"connect_timeout": connect_timeout_s} if url.get_backend_name() == "postgresql" else {}
    try:
        engine = create_engine(url, connect_args=args)
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - drivers raise their own types
        message = str(getattr(exc, "orig", None) or exc).strip()
        raise DeepsuiteError(f"cannot connect to {redact(uri)}: "
                             f"{message.splitlines()[0] if message else type(exc).__name__}") from None


def check_artifacts(destination: str) -> str:
    """A local folder is created and must be writable; object stores (s3://, gs://...) pass through."""
    parsed = urllib.parse.urlsplit(destination)
    if parsed.scheme not in ("", "file"):
        return destination
    folder = Path(parsed.path if parsed.scheme else destination).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DeepsuiteError(f"--artifacts-destination {folder}: cannot create it ({exc.strerror}); "
                             "choose a folder the server's user can write") from None
    if not os.access(folder, os.W_OK):
        raise DeepsuiteError(f"--artifacts-destination {folder} is not writable by this user")
    return str(folder.resolve())


AUTH_SECRET_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"   # MLflow's auth app signs its CSRF tokens with it
AUTH_ADMIN_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"       # the admin's password, read once, by the first start
AUTH_DATABASE = "basic_auth.db"                     # MLflow's default user store, in the working folder


def check_auth() -> None:
    """What MLflow's basic-auth app needs before it starts, said in one line each instead of a traceback."""
    if importlib.util.find_spec("flask_wtf") is None:
        raise DeepsuiteError("--auth needs MLflow's auth extra: pip install 'mlflow[auth]' "
                             "(or pip install -e '.[server]')")
    if not os.environ.get(AUTH_SECRET_ENV):
        raise DeepsuiteError(f"--auth needs {AUTH_SECRET_ENV} in the environment (any long random string, the "
                             "same for every server process), e.g. export "
                             f"{AUTH_SECRET_ENV}=$(python -c 'import secrets; print(secrets.token_hex(32))')")
    if 0 < len(os.environ.get(AUTH_ADMIN_ENV, "")) < 12:
        raise DeepsuiteError(f"{AUTH_ADMIN_ENV}: MLflow needs an admin password of at least 12 characters")
    if not os.environ.get(AUTH_ADMIN_ENV) and not os.environ.get("MLFLOW_AUTH_CONFIG_PATH") \
            and not Path(AUTH_DATABASE).exists():
        raise DeepsuiteError(f"--auth starts a new user store ({AUTH_DATABASE} here): set {AUTH_ADMIN_ENV} to the "
                             "password the 'admin' user gets")


def server_command(artifacts_destination: str, host: str, port: int, workers: int,
                   allowed_hosts: str | None = None, auth: bool = False) -> list[str]:
    """`mlflow server`'s command line; the database URI is not on it (it travels in the environment, as
    MLFLOW_BACKEND_STORE_URI, so its password never shows in `ps`)."""
    return [*mlflow_cli(), "server",
            "--artifacts-destination", artifacts_destination, "--serve-artifacts",
            "--host", host, "--port", str(port), "--workers", str(workers),
            *(["--allowed-hosts", allowed_hosts] if allowed_hosts else []),
            *(["--app-name", "basic-auth"] if auth else [])]


def start_server(backend_store_uri: str, artifacts_destination: str, host: str = LOOPBACK, port: int = 5000,
                 workers: int = 4, allowed_hosts: str | None = None, echo: Callable[[str], None] = print,
                 auth: bool = False) -> int:
    """`deepsuite server`: run the shared tracking server until Ctrl-C."""
    if workers < 1:
        raise DeepsuiteError(f"--workers {workers}: need at least 1")
    ensure_port_free(host, port, "the server")
    if auth:
        check_auth()
    check_backend(backend_store_uri)
    artifacts = check_artifacts(artifacts_destination)
    command = server_command(artifacts, host, port, workers, allowed_hosts, auth)
    exposed = not is_loopback(host)

    def banner(url: str) -> str:
        shown = url if not exposed else f"http://<this machine's name>:{port}"
        return (f"MLflow tracking server on {redact(backend_store_uri)}, artifacts in {artifacts}\n"
                f"  UI: {url}  (press Ctrl-C to stop)\n"
                f"  clients: deepsuite run <pipeline> --tracking-uri {shown}  "
                f"(or export MLFLOW_TRACKING_URI={shown})"
                + ("\n  basic auth: clients export MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD; "
                   f"add users at {url}/signup as admin" if auth else "")
                + ("\n  warning: no authentication: anyone who can reach this port can read and delete runs "
                   "(start it with --auth, or put it behind a VPN or an authenticating proxy)"
                   if exposed and not auth else ""))

    echo(f"starting the MLflow server on {redact(backend_store_uri)} (a new database gets its tables first)")
    env = {**NO_GENAI_JOBS, "MLFLOW_BACKEND_STORE_URI": backend_store_uri}
    return run_mlflow_server(command, url_for(host, port), banner, echo=echo, env=env,
                             ready_timeout=SCHEMA_READY_TIMEOUT_S)
